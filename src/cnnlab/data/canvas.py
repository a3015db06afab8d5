"""Canvases of several digits (or Fashion-MNIST items) with boxes and per-pixel masks, for detection and
segmentation, built deterministically from the real MNIST-format files.

Each split draws its objects only from its own images: training canvases from the training files
outside the validation hold-out (the same hold-out as the classification split), validation canvases
from the held-out images, test canvases from the test files; no image crosses splits. Generation is
vectorised over canvases (one pass per object slot), so tens of thousands of canvases take seconds.

Boxes are ``x1, y1, x2, y2`` in pixels around the object's ink (pixels >= ``ink_threshold``), with
``x2, y2`` one past the last ink column / row; the mask is 0 on the background and ``class + 1`` on
the object's ink pixels (where objects touch, the brighter pixel's object wins).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cnnlab.data import readers
from cnnlab.data.datamodule import resolve_num_workers
from cnnlab.data.readers import ImageSplit
from cnnlab.data.transforms import Normalize
from cnnlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PLACEMENT_TRIES = 16  # candidate positions per object; an object with no free spot is left out
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}  # one random stream per split, from the seed


@dataclass(frozen=True)
class Canvases:
    """One split's canvases; objects are padded to ``max_objects`` per canvas (label -1, box 0)."""

    images: torch.Tensor  # (N, C, S, S) uint8
    boxes: torch.Tensor  # (N, M, 4) float32, x1 y1 x2 y2 in pixels
    labels: torch.Tensor  # (N, M) int64, -1 where there is no object
    masks: torch.Tensor  # (N, S, S) uint8 (int64 in batches), 0 background, class + 1 on ink
    sources: torch.Tensor  # (N, M) int64: the index of each object's image in its file split, -1 padding

    def __len__(self) -> int:
        return len(self.images)


def ink_boxes(images: np.ndarray, threshold: int) -> np.ndarray:
    """(N, 4) x1 y1 x2 y2 of the pixels >= threshold of (N, H, W) images; the whole image when it has none."""
    ink = images >= threshold
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    height, width = images.shape[1:]
    empty = ~rows.any(axis=1)
    y1 = np.where(empty, 0, rows.argmax(axis=1))
    y2 = np.where(empty, height, height - rows[:, ::-1].argmax(axis=1))
    x1 = np.where(empty, 0, cols.argmax(axis=1))
    x2 = np.where(empty, width, width - cols[:, ::-1].argmax(axis=1))
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes broadcast over leading dimensions: a (..., 4), b (..., 4)."""
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area = lambda box: (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def make_canvases(
    split: ImageSplit,
    pool: np.ndarray,
    count: int,
    canvas_size: int,
    max_objects: int,
    max_overlap: float,
    ink_threshold: int,
    rng: np.random.Generator,
) -> Canvases:
    """``count`` canvases of 1 to ``max_objects`` objects drawn from ``split`` images ``pool``.

    Objects are placed one slot at a time for all canvases at once: each tries PLACEMENT_TRIES random
    positions and takes the first whose ink box overlaps every earlier box by IoU <= ``max_overlap``.
    """
    images = split.images.numpy()
    channels, height, width = images.shape[1:]
    grey = images.max(axis=1)  # ink of any channel
    source_boxes = ink_boxes(grey, ink_threshold)
    wanted = rng.integers(1, max_objects + 1, size=count)
    sources = np.full((count, max_objects), -1, dtype=np.int64)
    boxes = np.zeros((count, max_objects, 4), dtype=np.float32)
    labels = np.full((count, max_objects), -1, dtype=np.int64)
    canvas = np.zeros((count, channels, canvas_size, canvas_size), dtype=np.uint8)
    brightness = np.zeros((count, canvas_size, canvas_size), dtype=np.uint8)
    masks = np.zeros((count, canvas_size, canvas_size), dtype=np.uint8)
    for slot in range(max_objects):
        active = np.nonzero(wanted > slot)[0]
        chosen = pool[rng.integers(0, len(pool), size=len(active))]
        offsets = rng.integers(
            0, [canvas_size - width + 1, canvas_size - height + 1], size=(len(active), PLACEMENT_TRIES, 2)
        )
        candidates = source_boxes[chosen][:, None, :] + np.tile(offsets, 2).astype(np.float32)
        if slot:
            overlap = _iou(candidates[:, :, None, :], boxes[active][:, None, :slot, :])
            overlap = np.where(labels[active][:, None, :slot] >= 0, overlap, 0.0)
            free = (overlap <= max_overlap).all(axis=2)
        else:
            free = np.ones((len(active), PLACEMENT_TRIES), dtype=bool)
        placed = free.any(axis=1)
        active, chosen = active[placed], chosen[placed]
        if not len(active):
            continue
        pick = free[placed].argmax(axis=1)
        x, y = offsets[placed, pick, 0], offsets[placed, pick, 1]
        boxes[active, slot] = candidates[placed, pick]
        labels[active, slot] = split.labels.numpy()[chosen]
        sources[active, slot] = chosen
        marks = (labels[active, slot] + 1).astype(np.uint8)
        # paste canvases sharing a position together: plain slices instead of a scatter per pixel
        key = y * canvas_size + x
        order = np.argsort(key, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(key[order]) != 0])
        for group in np.split(order, starts[1:]):
            top, left = int(y[group[0]]), int(x[group[0]])
            window = (slice(top, top + height), slice(left, left + width))
            where, patch = active[group], grey[chosen[group]]
            wins = (patch >= ink_threshold) & (patch >= brightness[where][:, window[0], window[1]])
            region = masks[where][:, window[0], window[1]]
            masks[where, window[0], window[1]] = np.where(wins, marks[group][:, None, None], region)
            current = brightness[where][:, window[0], window[1]]
            brightness[where, window[0], window[1]] = np.maximum(current, patch)
            current_canvas = canvas[where][:, :, window[0], window[1]]
            canvas[where, :, window[0], window[1]] = np.maximum(current_canvas, images[chosen[group]])
    return Canvases(
        torch.from_numpy(canvas),
        torch.from_numpy(boxes),
        torch.from_numpy(labels),
        torch.from_numpy(masks),
        torch.from_numpy(sources),
    )


def canvas_batch(batch: Any) -> Any:
    """The DataLoader's collate for CanvasSet, whose ``__getitems__`` already returns whole batches."""
    return batch


class CanvasSet(Dataset):
    """Samples (image, boxes, labels, mask) of one split; fetched a batch at a time (no per-item collate)."""

    def __init__(self, canvases: Canvases) -> None:
        self.canvases = canvases

    def __len__(self) -> int:
        return len(self.canvases)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, ...]:
        c = self.canvases
        return c.images[item], c.boxes[item], c.labels[item], c.masks[item].long()

    def __getitems__(self, items: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(items)
        c = self.canvases
        return c.images[index], c.boxes[index], c.labels[index], c.masks[index].long()


class CanvasDataModule(L.LightningDataModule):
    """Detection / segmentation batches ``(images, boxes, labels, masks)`` of generated canvases.

    ``source`` names the classification dataset the objects come from (``mnist``, ``fashion_mnist``);
    ``val_size`` and ``split_seed`` hold out the same validation images as that dataset's classifier.
    """

    holds = "canvases"  # what it feeds (cnnlab.tasks): detectors and U-Nets, not whole-image classifiers

    def __init__(
        self,
        name: str,
        source: str,
        root: str,
        channels: int,
        canvas_size: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        classes: Sequence[str],
        max_objects: int = 4,
        max_overlap: float = 0.2,
        ink_threshold: int = 64,
        train_canvases: int = 20000,
        val_canvases: int = 1000,
        test_canvases: int = 1000,
        seed: int = 0,
        val_size: int = 5000,
        split_seed: int = 0,
        batch_size: int = 64,
        num_workers: int | str = 0,
        pin_memory: bool = True,
        download: bool = False,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        self.source = readers.source(source)
        self.source_name = source
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} is invalid; use a positive batch size")
        if len(classes) != num_classes:
            raise ConfigError(f"data.classes has {len(classes)} names but data.num_classes={num_classes}")
        if max_objects < 1:
            raise ConfigError(f"data.max_objects={max_objects} is invalid; use 1 or more objects per canvas")
        for split, count in (("train", train_canvases), ("val", val_canvases), ("test", test_canvases)):
            if count < 0 or (split != "val" and count == 0):
                raise ConfigError(f"data.{split}_canvases={count} is invalid; use a positive count")
        self.name = name
        self.root = Path(root).expanduser()
        self.canvas_size = canvas_size
        self.shape = (channels, canvas_size, canvas_size)
        self.num_classes = num_classes
        self.classes = list(classes)
        self.max_objects = max_objects
        self.max_overlap = max_overlap
        self.ink_threshold = ink_threshold
        self.counts = {"train": train_canvases, "val": val_canvases, "test": test_canvases}
        self.seed = seed
        self.val_size = val_size if val_canvases else 0
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.num_workers = resolve_num_workers(num_workers)
        self.pin_memory = pin_memory
        self.download = download
        self.normalize = Normalize(mean, std)
        self.train_set: CanvasSet | None = None
        self.val_set: CanvasSet | None = None
        self.test_set: CanvasSet | None = None

    @property
    def has_validation(self) -> bool:
        return self.val_size > 0

    def prepare_data(self) -> None:
        if self.download:
            readers.download(self.source_name, self.root)

    def _check_fits(self, object_size: int) -> None:
        if self.canvas_size < object_size:
            raise ConfigError(
                f"data.canvas_size={self.canvas_size} is smaller than the {object_size}-pixel objects; "
                f"use data.canvas_size >= {object_size}"
            )
        # objects may overlap a little: about a 3/4-object pitch along each side
        capacity = max(1, int(self.canvas_size / (0.75 * object_size))) ** 2
        if self.max_objects > capacity:
            raise ConfigError(
                f"data.max_objects={self.max_objects} objects of {object_size} pixels do not fit a "
                f"{self.canvas_size}-pixel canvas with limited overlap (at most {capacity}); raise "
                f"data.canvas_size or lower data.max_objects"
            )

    def _generate(self, split: ImageSplit, pool: np.ndarray, stage: str) -> CanvasSet:
        rng = np.random.default_rng([self.seed, SPLIT_STREAMS[stage]])
        canvases = make_canvases(
            split,
            pool,
            self.counts[stage],
            self.canvas_size,
            self.max_objects,
            self.max_overlap,
            self.ink_threshold,
            rng,
        )
        objects = int((canvases.labels >= 0).sum())
        log.info("%s: %d %s canvases, %d objects", self.name, len(canvases), stage, objects)
        return CanvasSet(canvases)

    def _read(self, train: bool) -> ImageSplit:
        split = self.source.read(self.root, train)
        if split.images.shape[1] != self.shape[0]:
            raise DataError(
                f"{self.source.title} images have {split.images.shape[1]} channels but data.channels="
                f"{self.shape[0]}; fix data.channels"
            )
        self._check_fits(max(split.images.shape[2:]))
        return split

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate", None) and self.train_set is None:
            split = self._read(train=True)
            if not 0 <= self.val_size < len(split):
                raise ConfigError(
                    f"data.val_size={self.val_size} is invalid for {len(split)} training images; "
                    f"use 0 <= data.val_size < {len(split)}"
                )
            # the same hold-out as the classification datamodule of the source dataset
            order = torch.randperm(len(split), generator=torch.Generator().manual_seed(self.split_seed))
            self.val_indices, self.train_indices = order[: self.val_size], order[self.val_size :]
            self.train_set = self._generate(split, self.train_indices.numpy(), "train")
            if self.val_size:
                self.val_set = self._generate(split, self.val_indices.numpy(), "val")
        if stage in ("test", "predict", None) and self.test_set is None:
            split = self._read(train=False)
            self.test_set = self._generate(split, np.arange(len(split)), "test")

    def _loader(self, dataset: CanvasSet | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("setup() must run before asking for a loader")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            collate_fn=canvas_batch,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, train=False) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, torch.Tensor):  # images alone (the model summary's example)
            return self.normalize(batch)
        images, *targets = batch
        return (self.normalize(images), *targets)
