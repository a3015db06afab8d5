"""Canvases for detection and segmentation: deterministic, leak-free, boxes and masks on the ink."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data.canvas import CanvasDataModule, ink_boxes
from cnnlab.data.readers import read_mnist
from cnnlab.errors import ConfigError

CLASSES = [str(i) for i in range(10)]


def datamodule(root: Path, **options) -> CanvasDataModule:
    settings = {"train_canvases": 120, "val_canvases": 30, "test_canvases": 40, "val_size": 40} | options
    return CanvasDataModule(
        "mnist_canvas", "mnist", str(root), 1, 64, 10, [0.06], [0.22], CLASSES, **settings
    )


def built(root: Path, **options) -> CanvasDataModule:
    module = datamodule(root, **options)
    module.setup()
    return module


def test_the_same_seed_gives_the_same_canvases_and_another_seed_others(tiny_data: Path) -> None:
    first, again, other = built(tiny_data), built(tiny_data), built(tiny_data, seed=1)
    for split in ("train_set", "val_set", "test_set"):
        a, b = getattr(first, split).canvases, getattr(again, split).canvases
        for field in ("images", "boxes", "labels", "masks", "sources"):
            assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(first.train_set.canvases.images, other.train_set.canvases.images)


def test_no_image_crosses_splits(tiny_data: Path) -> None:
    module = built(tiny_data)
    train_pool, val_pool = set(module.train_indices.tolist()), set(module.val_indices.tolist())
    train_sources = module.train_set.canvases.sources
    val_sources = module.val_set.canvases.sources
    assert set(train_sources[train_sources >= 0].tolist()) <= train_pool
    assert set(val_sources[val_sources >= 0].tolist()) <= val_pool
    # by content too: no test-file image is pasted into a training canvas
    train_images = read_mnist(tiny_data, train=True).images
    test_images = read_mnist(tiny_data, train=False).images
    used = {train_images[i].numpy().tobytes() for i in train_sources[train_sources >= 0].tolist()}
    assert not used & {image.numpy().tobytes() for image in test_images}


def test_each_canvas_is_its_sources_pasted_at_their_boxes(tiny_data: Path) -> None:
    module = built(tiny_data, ink_threshold=200)  # ink boxes smaller than the 28-pixel patches
    canvases = module.train_set.canvases
    source_images = read_mnist(tiny_data, train=True).images[:, 0].numpy()
    source_boxes = ink_boxes(source_images, 200)
    for index in range(20):
        rebuilt = np.zeros((64, 64), dtype=np.uint8)
        for slot in range(module.max_objects):
            source = int(canvases.sources[index, slot])
            if source < 0:
                assert int(canvases.labels[index, slot]) == -1
                continue
            x, y = (canvases.boxes[index, slot, :2].numpy() - source_boxes[source, :2]).astype(int)
            window = rebuilt[y : y + 28, x : x + 28]
            np.maximum(window, source_images[source], out=window)
            box = canvases.boxes[index, slot].int().tolist()
            # the mask marks this object's class on ink inside its box only
            object_mask = (canvases.masks[index] == canvases.labels[index, slot] + 1).numpy()
            inside = np.zeros_like(object_mask)
            inside[box[1] : box[3], box[0] : box[2]] = True
            assert (
                object_mask[~inside].sum() == 0
                or (canvases.labels[index] == canvases.labels[index, slot]).sum() > 1
            )
        assert np.array_equal(rebuilt, canvases.images[index, 0].numpy())
        assert ((canvases.masks[index] > 0).numpy() <= (rebuilt >= 200)).all()


def test_boxes_are_tight_around_the_ink() -> None:
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 5:9, 10:20] = 255
    image[0, 3, 3] = 10  # faint: not ink
    assert ink_boxes(image, 64).tolist() == [[10, 5, 20, 9]]


def test_objects_per_canvas_stay_within_the_limits(tiny_data: Path) -> None:
    module = built(tiny_data, max_objects=3)
    counts = (module.train_set.canvases.labels >= 0).sum(dim=1)
    assert counts.min() >= 1 and counts.max() <= 3 and len(set(counts.tolist())) > 1


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_objects": 0}, "data.max_objects=0 is invalid"),
        ({"canvas_size": 20}, "data.canvas_size=20 is smaller than the 28-pixel objects"),
        ({"max_objects": 30}, "do not fit a 64-pixel canvas"),
    ],
)
def test_impossible_canvases_are_one_line_config_errors(
    tiny_data: Path, options: dict, fragment: str
) -> None:
    canvas_size = options.pop("canvas_size", 64)
    with pytest.raises(ConfigError, match=fragment) as error:
        module = CanvasDataModule(
            "mnist_canvas", "mnist", str(tiny_data), 1, canvas_size, 10, [0.1], [0.2], CLASSES, **options
        )
        module.setup("test")
    assert "\n" not in str(error.value)
