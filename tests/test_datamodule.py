from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from cnnlab.data import ImageDataModule
from cnnlab.errors import ConfigError, user_error
from tests.conftest import CONF

DATASETS = ["cifar10", "mnist", "fashion_mnist"]


def make_datamodule(root: Path, dataset: str, *overrides: str) -> ImageDataModule:
    """The datamodule exactly as `python -m train data=<dataset>` builds it."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", [f"data={dataset}", f"data.root={root}", "data.num_workers=0", *overrides])
    return instantiate(cfg.data)


@pytest.mark.parametrize("dataset", DATASETS)
def test_split_is_disjoint_complete_and_reproducible(tiny_data: Path, dataset: str) -> None:
    first = make_datamodule(tiny_data, dataset, "data.val_size=50")
    first.setup("fit")
    train, val = set(first.train_indices.tolist()), set(first.val_indices.tolist())
    assert len(val) == 50 and not train & val
    assert train | val == set(range(200))
    again = make_datamodule(tiny_data, dataset, "data.val_size=50")
    again.setup("fit")
    assert torch.equal(first.val_indices, again.val_indices)
    other = make_datamodule(tiny_data, dataset, "data.val_size=50", "data.split_seed=1")
    other.setup("fit")
    assert not torch.equal(first.val_indices, other.val_indices)


@pytest.mark.parametrize("dataset", DATASETS)
def test_augmentation_is_train_only(tiny_data: Path, dataset: str) -> None:
    # the DataLoader path: raw images from the loaders, augmented per batch on the training device
    dm = make_datamodule(tiny_data, dataset, "data.val_size=50", "data.loader=torch")
    dm.setup("fit")
    dm.setup("test")
    raw = dm.train_set.split.images
    val_images, _ = next(iter(dm.val_dataloader()))
    assert torch.equal(val_images, raw[dm.val_indices[: len(val_images)]])
    test_images, _ = next(iter(dm.test_dataloader()))
    assert torch.equal(test_images, dm.test_set.split.images[: len(test_images)])
    images, _ = next(iter(dm.train_dataloader()))
    dm.trainer = SimpleNamespace(training=True, global_rank=0, strategy=SimpleNamespace(root_device="cpu"))
    batch = raw[dm.train_indices[:50]]
    augmented, _ = dm.on_after_batch_transfer((batch, torch.zeros(50, dtype=torch.long)), 0)
    changed = (augmented != dm.normalize(batch)).flatten(1).any(1)
    assert int(changed.sum()) > 10  # random crops / flips / affine change most samples
    assert images.dtype == torch.uint8 and images.shape[1:] == raw.shape[1:]


def test_mnist_augmentation_never_flips(tiny_data: Path) -> None:
    dm = make_datamodule(tiny_data, "mnist")
    names = [type(t).__name__ for t in dm.train_transform.transforms]
    assert not any("Flip" in name for name in names)


def test_batches_are_normalised_with_the_dataset_statistics(tiny_data: Path) -> None:
    dm = make_datamodule(tiny_data, "cifar10", "data.val_size=50")
    dm.setup("fit")
    images, labels = next(iter(dm.val_dataloader()))
    normalised, same_labels = dm.on_after_batch_transfer((images, labels), 0)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    assert normalised.dtype == torch.float32 and torch.equal(same_labels, labels)
    torch.testing.assert_close(normalised, (images.float() / 255 - mean) / std)
    torch.testing.assert_close(dm.normalize.invert(normalised), images.float() / 255)


@pytest.mark.parametrize("val_size", [-1, 200, 10_000])
def test_invalid_val_size_is_a_config_error(tiny_data: Path, val_size: int) -> None:
    dm = make_datamodule(tiny_data, "mnist", f"data.val_size={val_size}")
    with pytest.raises(ConfigError, match="data.val_size"):
        dm.setup("fit")


def test_val_size_zero_trains_on_everything(tiny_data: Path) -> None:
    dm = make_datamodule(tiny_data, "mnist", "data.val_size=0")
    dm.setup("fit")
    assert len(dm.train_set) == 200 and dm.val_dataloader() == [] and not dm.has_validation


def test_zero_batch_size_is_a_config_error(tiny_data: Path) -> None:
    with pytest.raises(Exception) as error:  # Hydra's instantiate wraps it; the entry point unwraps it
        make_datamodule(tiny_data, "mnist", "data.batch_size=0")
    assert isinstance(user_error(error.value), ConfigError)
    assert "data.batch_size=0" in str(user_error(error.value))


def test_wrong_channel_count_in_data_config_is_reported(tiny_data: Path) -> None:
    dm = make_datamodule(tiny_data, "mnist", "data.channels=3")
    with pytest.raises(Exception, match=r"\(1, 28, 28\).*data.channels"):
        dm.setup("fit")
