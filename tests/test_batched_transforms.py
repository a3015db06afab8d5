"""The whole-batch augmentations against torchvision's per-image ones, and the loader choice."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from cnnlab.data.batched_transforms import (
    batch_transforms,
    draw_affine_params,
    inverse_affine_matrices,
    random_affine,
    unbatchable,
    warp_affine,
)
from cnnlab.data.device_loader import choose_loader
from tests.test_datamodule import make_datamodule


@pytest.mark.parametrize(
    ("shape", "interpolation", "fill", "center"),
    [
        ((1, 28, 28), "nearest", 0, None),  # MNIST's default
        ((3, 32, 32), "bilinear", 0, None),
        ((3, 32, 32), "nearest", [10, 20, 30], [5.0, 9.0]),
        ((3, 31, 27), "bilinear", [10, 20, 30], None),
    ],
)
def test_affine_matches_torchvision_on_fixed_parameters(shape, interpolation, fill, center) -> None:
    generator = torch.Generator().manual_seed(0)
    n = 32
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=generator)
    angle = torch.rand(n, generator=generator) * 60 - 30
    translate = (torch.rand(n, 2, generator=generator) * 10 - 5).round()
    scale = torch.rand(n, generator=generator) * 0.4 + 0.8
    shear = torch.rand(n, 2, generator=generator) * 20 - 10
    relative_center = (0.0, 0.0) if center is None else (center[0] - shape[2] / 2, center[1] - shape[1] / 2)
    matrices = inverse_affine_matrices(angle, translate, scale, shear, relative_center)
    batched = warp_affine(images, matrices, interpolation, fill)
    expected = torch.stack(
        [
            TF.affine(
                images[i],
                angle=float(angle[i]),
                translate=[int(translate[i, 0]), int(translate[i, 1])],
                scale=float(scale[i]),
                shear=[float(shear[i, 0]), float(shear[i, 1])],
                interpolation=v2.InterpolationMode(interpolation),
                fill=fill,
                center=center,
            )
            for i in range(n)
        ]
    )
    assert batched.dtype == torch.uint8 and torch.equal(batched, expected)
    assert not torch.equal(batched, images)


def test_affine_parameters_are_distributed_as_torchvision_draws_them() -> None:
    transform = v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=(-5, 5, -3, 3))
    n = 4000
    ours = draw_affine_params(transform, n, 28, 28, torch.Generator().manual_seed(1), torch.device("cpu"))
    torch.manual_seed(2)
    theirs = [transform.make_params([torch.zeros(1, 28, 28)]) for _ in range(n)]
    reference = {
        "angle": torch.tensor([p["angle"] for p in theirs]),
        "translate": torch.tensor([p["translate"] for p in theirs], dtype=torch.float32),
        "scale": torch.tensor([p["scale"] for p in theirs]),
        "shear": torch.tensor([p["shear"] for p in theirs]),
    }
    quantiles = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    for name, (low, high) in {"angle": (-10, 10), "scale": (0.9, 1.1)}.items():
        width = high - low
        assert ours[name].min() >= low and ours[name].max() <= high
        gap = (torch.quantile(ours[name], quantiles) - torch.quantile(reference[name], quantiles)).abs()
        assert float(gap.max()) < 0.04 * width, name
    for column, (low, high) in enumerate([(-5, 5), (-3, 3)]):
        gap = torch.quantile(ours["shear"][:, column], quantiles) - torch.quantile(
            reference["shear"][:, column], quantiles
        )
        assert float(gap.abs().max()) < 0.04 * (high - low)
    # whole-pixel shifts in [-2.8, 2.8] rounded: -3..3, with the same frequencies
    for column in range(2):
        shifts = ours["translate"][:, column]
        assert torch.equal(shifts, shifts.round()) and set(shifts.tolist()) == set(range(-3, 4))
        frequencies = [
            torch.bincount((t + 3).long(), minlength=7).float() / n
            for t in (shifts, reference["translate"][:, column])
        ]
        assert float((frequencies[0] - frequencies[1]).abs().max()) < 0.03


def test_random_affine_gives_each_image_its_own_parameters_reproducibly() -> None:
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    image[:, 8:20, 12:16] = 255
    images = image.expand(64, -1, -1, -1).contiguous()
    transform = v2.RandomAffine(degrees=10, translate=(0.1, 0.1))
    first = random_affine(images, transform, torch.Generator().manual_seed(5))
    again = random_affine(images, transform, torch.Generator().manual_seed(5))
    other = random_affine(images, transform, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert len({tuple(x.flatten().tolist()) for x in first}) > 50  # per image, not per batch


def test_only_the_policies_without_a_batched_version_fall_back_to_per_image() -> None:
    crop_flip_affine = [
        v2.RandomCrop(32, padding=4, padding_mode="reflect"),
        v2.RandomHorizontalFlip(),
        v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)),
    ]
    assert unbatchable(crop_flip_affine) == []
    assert [op.__name__ for op in batch_transforms(crop_flip_affine)] == ["crop", "flip", "affine"]
    policies = [v2.RandAugment(), v2.AutoAugment(), v2.TrivialAugmentWide()]
    assert unbatchable([*crop_flip_affine, *policies]) == ["RandAugment", "AutoAugment", "TrivialAugmentWide"]


def test_constant_padded_crop_uses_the_configured_fill() -> None:
    images = torch.full((20, 1, 4, 4), 7, dtype=torch.uint8)
    (crop,) = batch_transforms([v2.RandomCrop(4, padding=2, fill=99)])
    out = crop(images, torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {7, 99}


def test_auto_loader_choice() -> None:
    cpu = torch.device("cpu")
    assert choose_loader(1000, cpu, [])[0] == "tensor"
    assert choose_loader(2**60, cpu, [])[0] == "torch"  # does not fit
    choice, why = choose_loader(1000, cpu, ["RandAugment"])
    assert choice == "torch" and "RandAugment" in why


def training_stub() -> SimpleNamespace:
    return SimpleNamespace(
        training=True, global_rank=0, strategy=SimpleNamespace(root_device=torch.device("cpu"))
    )


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_dataloader_path_augments_whole_batches_on_the_device(tiny_data: Path, dataset: str) -> None:
    dm = make_datamodule(tiny_data, dataset, "data.val_size=50", "data.loader=torch", "data.batch_size=32")
    dm.setup("fit")
    raw = dm.train_set.split.images[dm.train_indices]
    assert torch.equal(torch.stack([dm.train_set[i][0] for i in range(len(raw))]), raw)  # no worker transform
    images, labels = next(iter(dm.train_dataloader()))
    evaluation, _ = dm.on_after_batch_transfer((images, labels), 0)  # not training: only normalised
    assert torch.equal(evaluation, dm.normalize(images))
    dm.trainer = training_stub()
    augmented, _ = dm.on_after_batch_transfer((images, labels), 0)
    changed = (augmented != dm.normalize(images)).flatten(1).any(1)
    assert int(changed.sum()) > len(images) // 2
    # a checkpoint carries the augmentation generator: a restored datamodule continues its draws
    state = dm.state_dict()
    expected, _ = dm.on_after_batch_transfer((images, labels), 0)
    restored = make_datamodule(
        tiny_data, dataset, "data.val_size=50", "data.loader=torch", "data.batch_size=32"
    )
    restored.load_state_dict(state)
    restored.trainer = training_stub()
    resumed, _ = restored.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(resumed, expected)


def test_auto_picks_the_device_path_and_says_why(tiny_data: Path, caplog) -> None:
    dm = make_datamodule(tiny_data, "mnist", "data.val_size=50")
    dm.setup("fit")
    with caplog.at_level(logging.INFO, logger="cnnlab.data.datamodule"):
        assert dm.loader_used == "tensor"
    assert "data.loader=auto chose tensor" in caplog.text


def test_per_image_policies_go_to_dataloader_workers_and_say_so(tiny_data: Path, caplog) -> None:
    dm = make_datamodule(tiny_data, "cifar10", "data.val_size=50", "augment=randaugment")
    dm.setup("fit")
    with caplog.at_level(logging.INFO, logger="cnnlab.data.datamodule"):
        assert dm.loader_used == "torch"
    assert "RandAugment" in caplog.text and "image by image" in caplog.text
    assert dm.train_set.transform is dm.train_transform  # the whole policy, in the workers
