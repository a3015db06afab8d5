from __future__ import annotations

import gzip
import logging
import pickle
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import readers
from cnnlab.errors import DataError
from tests.datasets import idx_bytes, make_images, write_cifar10, write_mnist_like


def test_cifar10_reader_returns_the_pickled_images(tmp_path: Path) -> None:
    write_cifar10(tmp_path, train_per_batch=20, test=30)
    train = readers.read_cifar10(tmp_path, train=True)
    test = readers.read_cifar10(tmp_path, train=False)
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (30, 3, 32, 32) and test.labels.dtype == torch.int64
    first_images, first_labels = make_images(20, (3, 32, 32), seed=0)  # data_batch_1
    assert torch.equal(train.images[:20], torch.from_numpy(first_images))
    assert torch.equal(train.labels[:20], torch.from_numpy(first_labels))


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reader_reads_gz_or_plain_idx_without_writing(tmp_path: Path, gz: bool) -> None:
    folder = write_mnist_like(tmp_path / "MNIST" / "raw", train=50, test=20, gz=gz)
    before = sorted(p.name for p in folder.iterdir())
    folder.chmod(0o555)  # the shared data folder is read-only
    try:
        train = readers.read_mnist(tmp_path, train=True)
        test = readers.read_mnist(tmp_path, train=False)
    finally:
        folder.chmod(0o755)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert train.images.shape == (50, 1, 28, 28) and test.images.shape == (20, 1, 28, 28)
    expected, labels = make_images(50, (28, 28), seed=10)
    assert torch.equal(train.images[:, 0], torch.from_numpy(expected))
    assert torch.equal(train.labels, torch.from_numpy(labels))


def test_fashion_mnist_falls_back_to_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    debian = write_mnist_like(tmp_path / "debian", train=30, test=10, gz=True)
    monkeypatch.setitem(
        readers.LAYOUTS, "fashion_mnist", replace(readers.LAYOUTS["fashion_mnist"], elsewhere=(debian,))
    )
    with caplog.at_level(logging.INFO, logger="cnnlab.data.readers"):
        split = readers.read_fashion_mnist(tmp_path / "empty-root", train=True)
    assert split.images.shape == (30, 1, 28, 28)
    # the log says where the files came from, and that they were not under the data root
    assert (
        f"nothing under {tmp_path / 'empty-root' / 'FashionMNIST' / 'raw'}, read from {debian}" in caplog.text
    )
    assert f"Fashion-MNIST training files read from {debian}" in caplog.text


def without_the_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fashion-MNIST's fallback to Debian's package pointed at a folder that does not exist (CI installs
    the package)."""
    layout = replace(readers.LAYOUTS["fashion_mnist"], elsewhere=(tmp_path / "not-installed",))
    monkeypatch.setitem(readers.LAYOUTS, "fashion_mnist", layout)


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion_mnist"])
def test_missing_data_names_the_path_and_the_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name
) -> None:
    without_the_debian_package(monkeypatch, tmp_path)
    with pytest.raises(DataError) as error:
        readers.source(name).read(tmp_path, True)
    message = str(error.value)
    assert str(tmp_path) in message and "CNNLAB_DATA" in message and "data.download=true" in message
    assert "data.root=<the folder that holds" in message and "\n" not in message


@pytest.mark.parametrize(
    ("name", "too_deep"),
    [
        ("cifar10", "cifar-10-batches-py"),
        ("mnist", "MNIST/raw"),
        ("mnist", "MNIST"),
        ("fashion_mnist", "FashionMNIST/raw"),
    ],
)
def test_a_root_inside_the_dataset_folder_gets_its_parent_suggested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, too_deep: str
) -> None:
    without_the_debian_package(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as error:  # a relative root, as data.root=data/MNIST/raw would be
        readers.source(name).read(Path("data") / too_deep, True)
    assert f"pass data.root={tmp_path / 'data'}, the folder that holds" in str(error.value)
    assert f"data root {tmp_path / 'data' / too_deep} points inside" in str(error.value)  # absolute


def test_a_missing_file_is_named_with_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as error:
        readers.read_mnist(Path("data"), train=True)
    root = tmp_path / "data"
    assert f"no {root / 'MNIST' / 'raw'}/train-images-idx3-ubyte[.gz] (data root {root})" in str(error.value)


def test_truncated_cifar_pickle_is_reported_with_its_path(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, train_per_batch=10, test=10)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="data_batch_3 is corrupt or truncated"):
        readers.read_cifar10(tmp_path, train=True)


def test_idx_with_wrong_magic_number_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    data = bytearray(idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8)))
    data[2] = 0x0D  # float32 type code, not ubyte
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="wrong magic number"):
        readers.read_idx(path)


def test_truncated_idx_gz_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as file:
        file.write(idx_bytes(np.arange(100, dtype=np.uint8))[:60])
    with pytest.raises(DataError, match="bytes, expected"):
        readers.read_idx(path)


def test_failed_download_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setitem(
        readers.SOURCES, "mnist", replace(readers.SOURCES["mnist"], torchvision_class=offline)
    )
    with pytest.raises(DataError, match="downloading MNIST .* failed .*data.download=false"):
        readers.download("mnist", tmp_path)


def test_unknown_dataset_lists_the_choices() -> None:
    with pytest.raises(DataError, match="cifar10, mnist, fashion_mnist"):
        readers.source("imagenet")


def test_cifar_pickle_without_labels_is_corrupt(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, train_per_batch=10, test=10)
    with (folder / "test_batch").open("wb") as file:
        pickle.dump({"data": np.zeros((10, 3072), dtype=np.uint8)}, file)
    with pytest.raises(DataError, match="test_batch"):
        readers.read_cifar10(tmp_path, train=False)
