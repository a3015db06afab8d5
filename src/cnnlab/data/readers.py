"""Readers for torchvision's on-disk dataset layouts, returning whole splits as uint8 tensors.

Reading the files directly (rather than through torchvision's dataset classes) gives one fast,
vectorised path for every dataset, reads MNIST from its official .gz files without writing next to
them, and turns a missing or corrupt file into a one-line DataError.
"""

from __future__ import annotations

import gzip
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from cnnlab.data.layout import DEBIAN_FASHION_MNIST as DEBIAN_FASHION_MNIST  # where it was before
from cnnlab.data.layout import LAYOUTS, Layout, find_files
from cnnlab.errors import DataError

log = logging.getLogger(__name__)

_IDX_UBYTE = 0x08


@dataclass(frozen=True)
class ImageSplit:
    """One split of a dataset: uint8 images (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DatasetSource:
    """How one dataset lies on disk and how torchvision downloads it."""

    layout: Layout
    read: Callable[[Path, bool], ImageSplit]
    torchvision_class: type

    @property
    def title(self) -> str:
        return self.layout.title

    @property
    def folder(self) -> str:
        return self.layout.folder


# the "read from" lines already written to each run log (Hydra's train.log file handler)
_ANNOUNCED: dict[tuple[str, ...], set[str]] = {}


def _read_from(title: str, train: bool, folder: Path) -> None:
    """Say where a split was read from, once per run: the evaluation after training reads the test files
    again (the same lines twice in the console and train.log), a sweep's next job says it in its own log."""
    message = f"{title} {'training' if train else 'test'} files read from {folder.absolute()}"
    run_logs = tuple(
        handler.baseFilename
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.FileHandler)
    )
    if not run_logs:  # no run (a script, a test): every read is news
        log.info(message)
        return
    said = _ANNOUNCED.setdefault(run_logs, set())
    if message not in said:
        said.add(message)
        log.info(message)


def _corrupt(path: Path, reason: str) -> DataError:
    return DataError(
        f"{path} is corrupt or truncated ({reason}); replace it with a fresh copy "
        f"(delete it and run with data.download=true)"
    )


def read_cifar10(root: Path, train: bool) -> ImageSplit:
    """Read the python-pickle version of CIFAR-10 from ``root/cifar-10-batches-py``."""
    paths = find_files(LAYOUTS["cifar10"], root, train)
    images, labels = [], []
    for path in paths:
        try:
            with path.open("rb") as file:
                batch = pickle.load(file, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch["labels"], dtype=np.int64))
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
            raise _corrupt(path, f"{type(error).__name__}: {error}") from error
        if len(images[-1]) != len(labels[-1]):
            raise _corrupt(path, f"{len(images[-1])} images but {len(labels[-1])} labels")
    _read_from("CIFAR-10", train, paths[0].parent)
    return ImageSplit(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file of unsigned bytes (optionally gzip-compressed) into an array of its shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError) as error:
        raise _corrupt(path, str(error)) from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
        raise _corrupt(path, f"wrong magic number {raw[:4].hex()}, expected 000008xx for an idx ubyte file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise _corrupt(path, f"{len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_mnist_like(layout: Layout, root: Path, train: bool) -> ImageSplit:
    title, under_root = layout.title, root / layout.folder
    images_path, labels_path = find_files(layout, root, train)
    if images_path.parent != under_root:  # e.g. Debian's Fashion-MNIST: say so, it is not under the root
        log.info(
            "%s: nothing under %s, read from %s instead", title, under_root.absolute(), images_path.parent
        )
    _read_from(title, train, images_path.parent)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise _corrupt(images_path, f"images {images.shape} do not match labels {labels.shape}")
    return ImageSplit(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def read_mnist(root: Path, train: bool) -> ImageSplit:
    """Read MNIST from ``root/MNIST/raw`` (plain or .gz idx files)."""
    return _read_mnist_like(LAYOUTS["mnist"], root, train)


def read_fashion_mnist(root: Path, train: bool) -> ImageSplit:
    """Read Fashion-MNIST from ``root/FashionMNIST/raw``, else from Debian's dataset-fashion-mnist."""
    return _read_mnist_like(LAYOUTS["fashion_mnist"], root, train)


SOURCES: dict[str, DatasetSource] = {
    "cifar10": DatasetSource(LAYOUTS["cifar10"], read_cifar10, datasets.CIFAR10),
    "mnist": DatasetSource(LAYOUTS["mnist"], read_mnist, datasets.MNIST),
    "fashion_mnist": DatasetSource(LAYOUTS["fashion_mnist"], read_fashion_mnist, datasets.FashionMNIST),
}


def source(name: str) -> DatasetSource:
    """The on-disk source of a dataset by its config name."""
    if name not in SOURCES:
        raise DataError(f"unknown dataset '{name}'; choose one of {', '.join(SOURCES)} (data=<name>)")
    return SOURCES[name]


def download(name: str, root: Path) -> None:
    """Download both splits with torchvision into ``root`` (needs a network)."""
    dataset = source(name)
    try:
        for train in (True, False):
            dataset.torchvision_class(str(root), train=train, download=True)
    except Exception as error:  # torchvision raises URLError, RuntimeError, OSError...
        raise DataError(
            f"downloading {dataset.title} into {root} failed ({type(error).__name__}: {error}); "
            f"check the network, or put the files under {root / dataset.folder} yourself "
            f"(or set CNNLAB_DATA) and run with data.download=false"
        ) from error
