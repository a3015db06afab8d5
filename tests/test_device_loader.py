from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from cnnlab.data.device_loader import DeviceBatches, batch_transforms, random_crop, random_flip
from tests.test_datamodule import make_datamodule


def test_random_crop_is_a_window_of_the_reflect_padded_image() -> None:
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    crops = random_crop(images, padding=2, generator=generator, padding_mode="reflect")
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    offsets = set()
    for image, crop in zip(padded, crops, strict=True):
        found = [
            (top, left)
            for top in range(5)
            for left in range(5)
            if torch.equal(image[:, top : top + 8, left : left + 8], crop)
        ]
        assert found, "every crop must be a window of its padded image"
        offsets.add(found[0])
    assert len(offsets) > 10  # windows vary per image, not per batch


def test_random_crop_matches_torchvision_for_the_same_window() -> None:
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    padded = v2.functional.pad(image, [4], padding_mode="reflect")
    generator = torch.Generator().manual_seed(3)
    crop = random_crop(image[None], 4, generator, "reflect")[0]
    windows = [v2.functional.crop(padded, top, left, 32, 32) for top in range(9) for left in range(9)]
    assert any(torch.equal(crop, window) for window in windows)


def test_random_flip_mirrors_about_half() -> None:
    images = torch.randint(0, 256, (400, 1, 4, 4), dtype=torch.uint8)
    flipped = random_flip(images, 0.5, torch.Generator().manual_seed(0))
    mirrored = (flipped == images.flip(-1)).flatten(1).all(1)
    unchanged = (flipped == images).flatten(1).all(1)
    assert bool((mirrored | unchanged).all()) and 150 < int(mirrored.sum()) < 250


def test_configured_transforms_map_to_batched_ops() -> None:
    ops = batch_transforms([v2.RandomCrop(32, padding=4, padding_mode="reflect"), v2.RandomHorizontalFlip()])
    assert [op.__name__ for op in ops] == ["crop", "flip"]
    ops = batch_transforms([v2.RandomAffine(degrees=10), v2.RandAugment()])
    assert ops[0].__name__ == "affine" and ops[1].__name__ == "apply"  # RandAugment: image by image
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    assert all(op(images, torch.Generator()).shape == images.shape for op in ops)


@pytest.mark.parametrize("dataset", ["cifar10", "mnist"])
def test_tensor_loader_serves_the_same_split_as_the_dataloader(tiny_data: Path, dataset: str) -> None:
    torch_dm = make_datamodule(
        tiny_data, dataset, "data.val_size=50", "data.batch_size=16", "data.loader=torch"
    )
    tensor_dm = make_datamodule(
        tiny_data, dataset, "data.val_size=50", "data.batch_size=16", "data.loader=tensor"
    )
    for dm in (torch_dm, tensor_dm):
        dm.setup("fit")
        dm.setup("test")
    for stage in ("val_dataloader", "test_dataloader"):
        expected = torch.cat([x for x, _ in getattr(torch_dm, stage)()])
        served = torch.cat([x for x, _ in getattr(tensor_dm, stage)()])
        assert torch.equal(expected, served)
    train_labels = torch.cat([y for _, y in tensor_dm.train_dataloader()])
    assert len(train_labels) == len(tensor_dm.train_dataloader()) * 16
    assert sorted(train_labels.tolist()) != train_labels.tolist()  # shuffled
    images, labels = next(iter(tensor_dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape[1:] == tensor_dm.shape
    normalised, _ = tensor_dm.on_after_batch_transfer((images, labels), 0)
    reference, _ = torch_dm.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(normalised, reference)


def test_device_batches_are_reproducible_for_a_seed_and_cover_each_image_once() -> None:
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 4, 4).contiguous()
    labels = torch.arange(100)

    def epoch(seed: int) -> torch.Tensor:
        loader = DeviceBatches(images, labels, batch_size=10, shuffle=True, seed=seed)
        return torch.cat([y for _, y in loader])

    assert torch.equal(epoch(1), epoch(1)) and not torch.equal(epoch(1), epoch(2))
    assert sorted(epoch(1).tolist()) == list(range(100))
    loader = DeviceBatches(images, labels, batch_size=10, shuffle=True, seed=1)
    assert not torch.equal(torch.cat([y for _, y in loader]), torch.cat([y for _, y in loader]))


@pytest.mark.parametrize("served", [3, 7, 0])  # mid-pass, at the pass's end, before any batch
def test_a_restored_loader_continues_the_exact_batch_stream(served: int) -> None:
    images = torch.randint(0, 256, (70, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(70)
    # batched crop, flip and affine, and a policy that runs image by image on torchvision's global RNG
    augment = [v2.RandomCrop(8, padding=2, padding_mode="reflect"), v2.RandomHorizontalFlip()]
    transforms = batch_transforms([*augment, v2.RandomAffine(degrees=10), v2.TrivialAugmentWide()])

    def make(seed: int) -> DeviceBatches:
        return DeviceBatches(
            images, labels, 10, shuffle=True, drop_last=True, transforms=transforms, seed=seed
        )

    original = make(seed=4)
    stream = iter(original)
    for _ in range(served):
        next(stream)
    state = original.state_dict()
    expected = [*stream, *original]  # the rest of this pass, then a whole next pass

    torch.manual_seed(123)  # a resumed run's global RNG is elsewhere
    restored = make(seed=99)  # and it builds its loader afresh; the state brings the seed back
    restored.load_state_dict(state)
    passes_left = 2 if served < len(original) else 1  # a finished pass resumes at the next one
    resumed = [batch for _ in range(passes_left) for batch in restored]
    assert len(resumed) == len(expected) == 2 * len(original) - served
    for (images_a, labels_a), (images_b, labels_b) in zip(resumed, expected, strict=True):
        assert torch.equal(labels_a, labels_b) and torch.equal(images_a, images_b)


def test_ranks_take_disjoint_shares() -> None:
    images, labels = torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10)
    shares = [
        torch.cat([y for _, y in DeviceBatches(images, labels, 2, shuffle=True, rank=r, world_size=2)])
        for r in (0, 1)
    ]
    assert len(shares[0]) == len(shares[1]) == 5 and not set(shares[0].tolist()) & set(shares[1].tolist())


def test_training_with_the_tensor_loader(train_run) -> None:
    record = train_run("model=smallcnn", "data=cifar10", "data.loader=tensor")
    assert record["status"] == "completed" and 0 <= record["test_acc"] <= 1 and record["loader"] == "tensor"


def test_training_on_the_dataloader_path_with_batched_affine(train_run) -> None:
    record = train_run("model=smallcnn", "data=mnist", "data.loader=torch")
    assert record["status"] == "completed" and record["loader"] == "torch"
