"""``data=folder data.path=DIR``: any folder of labelled images as one more classification dataset.

The files, classes and split come from ``image_folder``; this module turns them into what
``ImageDataModule`` trains on. Each split is decoded once (PIL: any format it opens, converted to
``data.channels`` and resized to ``data.image_size``: shorter side, then centre crop) into uint8
tensors by DataLoader workers, with a progress bar, and cached under ``data.cache_dir`` (by default
``paths.cache_dir``/folders, never the image folder nor the data root, which may be read-only), keyed by
the files' paths, sizes and modification times: the second run on a folder starts training at once.
When the decoded images would not fit in memory (``data.stream``), the training and validation
images are decoded per batch by the DataLoader workers instead, and only their statistics are cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, open_dict
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cnnlab.data.datamodule import (
    ImageDataModule,
    IndexedImages,
    resolve_num_workers,
    worker_start_method,
)
from cnnlab.data.device_loader import MEMORY_SHARE, free_memory_bytes
from cnnlab.data.image_folder import (
    FOLDER_DATAMODULE,
    FolderSplit,
    draw_split,
    read_split_file,
    write_split_file,
)
from cnnlab.data.readers import ImageSplit
from cnnlab.data.resumable import seeded
from cnnlab.errors import ConfigError, DataError, reason_of

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the decoding changes what a cached file holds
SKIPPED_FILE = "skipped_files.txt"
DECODE_BATCH = 256
MAX_DECODE_WORKERS = 8


def load_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """A (channels, size, size) uint8 image: grey (1) or RGB (3), the shorter side resized to ``size``
    and the centre cropped; a GIF's first frame."""
    mode = "L" if channels == 1 else "RGB"
    with Image.open(path) as image:
        image.draft(mode, (size, size))  # a JPEG decodes at the smallest scale still >= size: much faster
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # PIL's advice for palette images with transparency
        picture = image.convert(mode)
    if picture.size != (size, size):
        picture = ImageOps.fit(picture, (size, size), method=Image.Resampling.BILINEAR)
    if channels == 1:
        return torch.from_numpy(np.array(picture)[None])
    return torch.from_numpy(np.asarray(picture).transpose(2, 0, 1).copy())  # (H, W, C) -> (C, H, W)


class ImageFiles(Dataset):
    """Image files decoded when asked for (``load_image``), with their labels and an optional transform;
    indexable like ``IndexedImages`` (by position, or by (position, seed) from the seeded sampler)."""

    def __init__(
        self,
        paths: Sequence[Path],
        labels: torch.Tensor,
        channels: int,
        size: int,
        transform: Callable | None = None,
    ) -> None:
        self.paths = [str(path) for path in paths]
        self.labels = labels
        self.channels, self.size = channels, size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        item, seed = item if isinstance(item, tuple) else (item, None)
        image = load_image(Path(self.paths[item]), self.channels, self.size)
        if self.transform is not None:
            image = self.transform(image) if seed is None else seeded(self.transform, image, seed)
        return image, self.labels[item]


class _CheckedFiles(Dataset):
    """The decoding pass: each file's image, or zeros and the reason it could not be read."""

    def __init__(self, paths: Sequence[Path], channels: int, size: int) -> None:
        self.paths, self.channels, self.size = list(paths), channels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        try:
            return load_image(self.paths[index], self.channels, self.size), ""
        except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
            return torch.zeros(self.channels, self.size, self.size, dtype=torch.uint8), reason_of(error)


@dataclass
class Decoded:
    """One split's files decoded: the images (None when only checked), the per-channel pixel sums for
    the normalisation, and the unreadable files with the reason."""

    images: torch.Tensor | None
    sums: torch.Tensor
    squares: torch.Tensor
    pixels: int
    bad: dict[int, str] = field(default_factory=dict)

    def mean_std(self) -> tuple[list[float], list[float]]:
        mean = self.sums / self.pixels
        std = (self.squares / self.pixels - mean**2).clamp_min(0).sqrt()
        return [round(float(m), 4) for m in mean], [round(max(float(s), 1e-3), 4) for s in std]


def cache_key(paths: Sequence[Path], channels: int, size: int, keep: bool) -> str:
    """The files (path, size, modification time) and the decoding settings, hashed."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, channels, size, keep]).encode())
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as error:
            raise DataError(
                f"{path} is gone ({error.strerror}); restore it, or train a new run on the folder as it is"
            ) from error
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# decoded in this process already: the pipeline's check before training and the data module share them
_DECODED: dict[str, Decoded] = {}


def decode_workers(num_workers: int) -> int:
    """Decoding is all CPU work in PIL: every usable core unless data.num_workers says otherwise (0: none)."""
    if num_workers == 0:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(num_workers, min(MAX_DECODE_WORKERS, cores))


def decode(
    paths: Sequence[Path],
    channels: int,
    size: int,
    cache_dir: Path | None,
    num_workers: int,
    what: str,
    keep: bool = True,
) -> Decoded:
    """``paths`` decoded (``keep``) or only checked, with their statistics; from the cache if it has them."""
    key = cache_key(paths, channels, size, keep)
    if key in _DECODED:
        return _DECODED[key]
    cached = cache_dir / f"{key[:40]}.pt" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        try:
            decoded = Decoded(**torch.load(cached, map_location="cpu", weights_only=True))
            log.info("read %d %s from the cache %s", len(paths), what, cached)
            _DECODED[key] = decoded
            return decoded
        except Exception as error:  # a damaged or older cache file: decode again
            log.warning("the cache file %s is unreadable (%s): decoding again", cached, reason_of(error))
    decoded = _decode_files(paths, channels, size, num_workers, what, keep)
    if cached is not None:
        _store(decoded, cached)
    _DECODED[key] = decoded
    return decoded


def _decode_files(
    paths: Sequence[Path], channels: int, size: int, num_workers: int, what: str, keep: bool
) -> Decoded:
    started = time.perf_counter()
    workers = decode_workers(num_workers)
    loader = DataLoader(
        _CheckedFiles(paths, channels, size),
        batch_size=DECODE_BATCH,
        num_workers=workers,
        multiprocessing_context=worker_start_method() if workers else None,
    )
    images = torch.empty(len(paths), channels, size, size, dtype=torch.uint8) if keep else None
    sums = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    bad: dict[int, str] = {}
    start = 0
    progress = tqdm(total=len(paths), desc=f"decoding {what}", unit="img", disable=not sys.stderr.isatty())
    with progress:
        for batch, reasons in loader:
            end = start + len(batch)
            if images is not None:
                images[start:end] = batch
            bad.update({start + i: reason for i, reason in enumerate(reasons) if reason})
            good = batch[[not reason for reason in reasons]].double().div_(255)
            sums += good.sum(dim=(0, 2, 3))
            squares += good.square().sum(dim=(0, 2, 3))
            start = end
            progress.update(len(batch))
    pixels = (len(paths) - len(bad)) * size * size
    log.info(
        "%s %d %s to %dx%dx%d in %.1f s (%d worker processes)",
        "decoded" if keep else "checked (decoded for the statistics, not kept)",
        len(paths),
        what,
        channels,
        size,
        size,
        time.perf_counter() - started,
        workers,
    )
    return Decoded(images, sums, squares, max(pixels, 1), bad)


def _store(decoded: Decoded, path: Path) -> None:
    """Write the cache file atomically; a cache that cannot be written only costs the next run time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        torch.save(decoded.__dict__, partial)
        os.replace(partial, path)
    except OSError as error:
        log.warning("cannot write the decoded images to the cache %s (%s); set data.cache_dir", path, error)


# (folder, split file) pairs whose contents this process has already described
_ANNOUNCED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class FolderSource:
    """What ImageDataModule's messages call the dataset."""

    title: str


class FolderDataModule(ImageDataModule):
    """Train / validation / test batches of a folder of labelled images (see ``image_folder``).

    Class names, normalisation and the split come from the folder when the config does not give them
    (``classes``/``mean``/``std`` null); training writes them into the run config (``complete_config``),
    so the checkpoint rebuilds this exact module, and ``split_file`` (the run's split.csv) fixes the
    images of each split for ``evaluate``, ``predict`` and ``resume``.
    """

    def __init__(
        self,
        path: str,
        channels: int = 3,
        image_size: int = 32,
        classes: Sequence[str] | None = None,
        num_classes: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        split_file: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        cache_dir: str | None = None,
        on_bad_file: str = "stop",
        stream: bool | str = "auto",
        name: str | None = None,
        **common: Any,
    ) -> None:
        if on_bad_file not in ("stop", "skip"):
            raise ConfigError(f"data.on_bad_file={on_bad_file!r} is unknown; use stop or skip")
        if channels not in (1, 3):
            raise ConfigError(f"data.channels={channels} is invalid for images; use 3 (RGB) or 1 (grey)")
        if not isinstance(image_size, int) or image_size < 8:
            raise ConfigError(f"data.image_size={image_size} is invalid; use a size in pixels, e.g. 32 or 64")
        if common.get("folds") is not None:
            raise ConfigError(
                "data.folds (k-fold cross-validation) is not available for data=folder; drop it"
            )
        for setting in ("val_size", "root", "download"):  # the folder's split and path say these
            common.pop(setting, None)
        self.split_path = Path(split_file).expanduser() if split_file else None
        self.cache_path = Path(cache_dir).expanduser().absolute() if cache_dir else None
        self.on_bad_file = on_bad_file
        self.folder_split = self._load_split(path, classes, val_fraction, test_fraction, split_seed)
        self._announce()
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        size = channels * image_size * image_size
        self.stream = self._choose_stream(stream, size * len(self.folder_split.files), common.get("loader"))
        self._decode_settings = (channels, image_size)
        self._num_workers_setting = common.get("num_workers", "auto")
        if num_classes is not None and num_classes != len(self.folder_split.classes):
            raise ConfigError(
                f"data.num_classes={num_classes} but {self.folder_split.root} has "
                f"{len(self.folder_split.classes)} class folders; drop the data.num_classes override"
            )
        if mean is None or std is None:
            mean, std = self.decoded("train").mean_std()
        super().__init__(
            name=name or self.folder_split.root.name,  # e.g. leaves for ~/data/leaves
            root=str(self.folder_split.root),
            channels=channels,
            image_size=image_size,
            num_classes=len(self.folder_split.classes),
            mean=mean,
            std=std,
            classes=self.folder_split.classes,
            val_size=len(self.folder_split.rows("val")),
            split_seed=split_seed,
            **common,
        )
        if self.stream:
            self._loader_used = "torch"

    def find_source(self, name: str) -> FolderSource:
        return FolderSource(f"image folder {self.folder_split.root}")

    def _load_split(
        self,
        path: str,
        classes: Sequence[str] | None,
        val_fraction: float,
        test_fraction: float,
        seed: int,
    ) -> FolderSplit:
        """The run's recorded split when it has one (resume, evaluate, predict), else drawn and recorded.

        ``classes`` given: a trained run rebuilt (its saved config has them). Without its split file (an
        archived checkpoint, a moved run) the split is drawn again from the folder as it is now, and
        without the folder either, the module still serves ``predict`` (class names, size, normalisation).
        """
        if self.split_path is not None and self.split_path.is_file():
            return read_split_file(self.split_path, path, classes)
        rebuilt = classes is not None
        if rebuilt and not Path(str(path)).expanduser().is_dir():
            log.warning("%s is gone: this model can predict, but has no images to train or test on", path)
            return FolderSplit(Path(str(path)).expanduser(), list(classes), [], [], [])
        split = draw_split(path, val_fraction, test_fraction, seed)
        if rebuilt:
            log.warning(
                "no split file %s: drew the split from %s as it is now (the test images may differ)",
                self.split_path,
                split.root,
            )
            if list(classes) != split.classes:
                raise DataError(
                    f"the class folders of {split.root} ({', '.join(split.classes)}) are not the run's "
                    f"({', '.join(classes)}); restore them, or train a new run on the folder"
                )
        elif self.split_path is not None:
            write_split_file(split, self.split_path)
        return split

    def _choose_stream(self, stream: bool | str, decoded_bytes: int, loader: str | None) -> bool:
        """Whether the workers decode per batch: ``data.stream`` true, or auto and the decoded images
        exceed the share of free memory that data.loader=auto allows a split."""
        if stream == "auto":
            free = free_memory_bytes(torch.device("cpu"))
            chosen = free is not None and decoded_bytes > MEMORY_SHARE * free
            if chosen:
                log.info(
                    "data.stream=auto: the decoded images (%.1f GiB) exceed %d%% of the %.1f GiB free: "
                    "DataLoader workers decode the training and validation images per batch",
                    decoded_bytes / 2**30,
                    MEMORY_SHARE * 100,
                    free / 2**30,
                )
        elif isinstance(stream, bool):
            chosen = stream
        else:
            raise ConfigError(f"data.stream={stream!r} is invalid; use auto, true or false")
        if chosen and stream is True:
            log.info("data.stream=true: DataLoader workers decode training and validation images per batch")
        if chosen and loader == "tensor":
            raise ConfigError(
                "data.stream=true decodes images per batch in DataLoader workers, which data.loader=tensor "
                "does not use; pass data.loader=auto or data.stream=false"
            )
        return chosen

    def decoded(self, split: str) -> Decoded:
        """``split``'s images decoded (checked only, when streamed: the test split is always decoded, as
        the evaluation looks at every test image); unreadable files stop here unless skipped."""
        paths = self.folder_split.paths(split)
        channels, size = self._decode_settings
        keep = not self.stream or split == "test"
        # data.num_workers as the loaders read it: auto then decodes on every core this process may use
        # (decode_workers), at most MAX_DECODE_WORKERS
        workers = resolve_num_workers(self._num_workers_setting)
        result = decode(paths, channels, size, self.cache_path, workers, f"{split} images", keep)
        if result.bad:
            self._bad_files(split, paths, result.bad)
        return result

    def _bad_files(self, split: str, paths: Sequence[Path], bad: dict[int, str]) -> None:
        first, reason = next(iter(bad.items()))
        others = len(bad) - 1
        if self.on_bad_file == "stop":
            also = f"; {others} other file{'s are' if others != 1 else ' is'} bad too" if others else ""
            raise DataError(
                f"cannot read {paths[first]} as an image ({reason}){also}; fix or remove "
                f"{'them' if others else 'it'}, or pass data.on_bad_file=skip to train without "
                f"{'them' if others else 'it'}"
            )
        log.warning(
            "data.on_bad_file=skip: left out %d unreadable %s image%s%s",
            len(bad),
            split,
            "" if len(bad) == 1 else "s",
            f" (listed in {self.split_path.parent / SKIPPED_FILE})" if self.split_path else "",
        )
        if self.split_path is not None:
            listed = self.split_path.parent / SKIPPED_FILE
            previous = listed.read_text().splitlines() if listed.is_file() else []
            lines = [f"{paths[i]}\t{why}" for i, why in bad.items()]
            listed.write_text("".join(f"{line}\n" for line in dict.fromkeys([*previous, *lines])))

    def _labelled(self, split: str) -> tuple[list[Path], torch.Tensor, Decoded, list[int]]:
        """``split``'s readable files, their labels, the split's decoding and the readable positions."""
        decoded = self.decoded(split)
        paths = self.folder_split.paths(split)
        keep = [i for i in range(len(paths)) if i not in decoded.bad]
        labels = torch.tensor(self.folder_split.split_labels(split), dtype=torch.int64)
        return [paths[i] for i in keep], labels[keep], decoded, keep

    def _split_of(self, split: str) -> ImageSplit:
        _, labels, decoded, keep = self._labelled(split)
        assert decoded.images is not None
        return ImageSplit(decoded.images[keep] if decoded.bad else decoded.images, labels)

    def check_all(self) -> None:
        """Decode (or check) every split before training: an unreadable file stops the run now, not after
        the last epoch; says what was found."""
        for split in ("train", "val", "test"):
            if self.folder_split.rows(split):
                self.decoded(split)

    def _announce(self) -> None:
        """Say what the folder holds, once per process and split (the pipeline builds this module twice)."""
        said = (str(self.folder_split.root), str(self.split_path))
        if said in _ANNOUNCED:
            return
        _ANNOUNCED.add(said)
        log.info("%s", self.folder_split.summary())
        imbalance = self.folder_split.imbalance()
        if imbalance:
            log.warning("%s", imbalance)

    def prepare_data(self) -> None:
        """Nothing to download: the images are the user's."""

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate", None) and self.train_set is None:
            self._setup_train_val()
        if stage in ("test", "predict", None) and self.test_set is None:
            if not self.folder_split.rows("test"):
                raise DataError(
                    f"no test images: {self.folder_split.root} is gone or has none; restore the folder "
                    "the run was trained on (or pass data.path=<where it is now> when training)"
                )
            self.test_set = IndexedImages(self._split_of("test"))

    def _setup_train_val(self) -> None:
        worker_transform = self.train_transform if self.per_image_augment else None
        channels, size = self._decode_settings
        if self.stream:
            paths, labels, _, _ = self._labelled("train")
            self.train_set = ImageFiles(paths, labels, channels, size, worker_transform)
            self.train_indices = torch.arange(len(paths))
            if self.val_size:
                val_paths, val_labels, _, _ = self._labelled("val")
                self.val_set = ImageFiles(val_paths, val_labels, channels, size)
                self.val_size = len(val_paths)
            return
        train = self._split_of("train")
        # one split, training images first: the classical baseline and the loaders index it as the others'
        parts = [train, self._split_of("val")] if self.val_size else [train]
        split = ImageSplit(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
        self.train_indices = torch.arange(len(train))
        self.val_indices = torch.arange(len(train), len(split))
        self.val_size = len(self.val_indices)
        self.train_set = IndexedImages(split, self.train_indices, worker_transform)
        self.val_set = IndexedImages(split, self.val_indices) if self.val_size else None
        # the training split now holds its own copy: the decoded tensors kept for the pipeline's second
        # build of this module would only double the memory (the test split reloads from the cache)
        _DECODED.clear()

    def load_image(self, path: Path) -> torch.Tensor:
        """One image file as the training images were made (for ``predict``)."""
        channels, size = self._decode_settings
        try:
            return load_image(path, channels, size)
        except Exception as error:
            raise DataError(
                f"cannot read {path} as an image ({reason_of(error)}); pass image files PIL opens"
            ) from error

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "path": str(self.folder_split.root),
            "split_file": str(self.split_path) if self.split_path else None,
            "images": {split: dict(counts) for split, counts in self.folder_split.counts().items()},
        }


def complete_config(cfg: DictConfig) -> None:
    """``data=folder``: read the folder before the model is built (its classes size the head), check every
    image, and write what was found (class names, normalisation, absolute paths) into ``cfg.data``, so that
    the checkpoint's saved config rebuilds the same data module. Other datasets: nothing to do."""
    data = cfg.get("data")
    if not data or data.get("_target_") != FOLDER_DATAMODULE:
        return
    from hydra.utils import instantiate

    datamodule: FolderDataModule = instantiate(data)
    datamodule.check_all()
    with open_dict(cfg):
        data.path = str(datamodule.folder_split.root)
        data.name = datamodule.name
        data.classes = list(datamodule.classes)
        data.num_classes = datamodule.num_classes
        data.mean, data.std = datamodule.normalize.mean, datamodule.normalize.std
        if datamodule.split_path is not None:
            data.split_file = str(datamodule.split_path.absolute())
        if datamodule.cache_path is not None:
            data.cache_dir = str(datamodule.cache_path)
