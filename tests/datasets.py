"""Tiny datasets written in the real on-disk formats, so tests run the real readers.

Each class has its own random template image and every sample is a noisy copy of it, so a model
can learn the classes within a few epochs.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

NUM_CLASSES = 10


def make_images(count: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uint8 images of ``shape`` (labels cycle through the classes) and their labels."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(1234).integers(0, 256, size=(NUM_CLASSES, *shape))
    labels = np.arange(count) % NUM_CLASSES
    rng.shuffle(labels)
    noise = rng.integers(0, 256, size=(count, *shape))
    images = (0.7 * templates[labels] + 0.3 * noise).astype(np.uint8)
    return images, labels.astype(np.int64)


def write_cifar10(root: Path, train_per_batch: int = 40, test: int = 100) -> Path:
    """CIFAR-10's python layout: five training pickles, a test pickle and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        count = test if name == "test_batch" else train_per_batch
        images, labels = make_images(count, (3, 32, 32), seed)
        batch = {
            "batch_label": name,
            "labels": labels.tolist(),
            "data": images.reshape(count, -1),
            "filenames": [f"{name}_{i}.png" for i in range(count)],
        }
        with (folder / name).open("wb") as file:
            pickle.dump(batch, file)
    meta = {
        "label_names": [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ]
    }
    with (folder / "batches.meta").open("wb") as file:
        pickle.dump(meta, file)
    return folder


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian dims, then the data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist_like(folder: Path, train: int = 200, test: int = 100, gz: bool = True) -> Path:
    """The four MNIST idx files (as the official .gz files, or decompressed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", train, 10), ("t10k", test, 11)):
        images, labels = make_images(count, (28, 28), seed)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            path = folder / f"{prefix}-{kind}-ubyte"
            data = idx_bytes(array)
            if gz:
                with gzip.open(f"{path}.gz", "wb") as file:
                    file.write(data)
            else:
                path.write_bytes(data)
    return folder


def write_all(root: Path) -> Path:
    """CIFAR-10 pickles, MNIST as .gz (as the official files), Fashion-MNIST decompressed."""
    write_cifar10(root)
    write_mnist_like(root / "MNIST" / "raw", gz=True)
    write_mnist_like(root / "FashionMNIST" / "raw", gz=False)
    return root
