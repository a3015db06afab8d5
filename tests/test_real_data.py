"""Short trainings on the real datasets under CNNLAB_DATA; each skips when its files are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cnnlab.data import readers

pytestmark = pytest.mark.real_data

DATA_ROOT = Path(os.environ.get("CNNLAB_DATA") or "/nonexistent")
HAS = {
    "mnist": (DATA_ROOT / "MNIST" / "raw").is_dir(),
    "cifar10": (DATA_ROOT / "cifar-10-batches-py").is_dir(),
    "fashion_mnist": (DATA_ROOT / "FashionMNIST" / "raw").is_dir() or readers.DEBIAN_FASHION_MNIST.is_dir(),
}


def needs(dataset: str):
    return pytest.mark.skipif(not HAS[dataset], reason=f"real {dataset} not found under CNNLAB_DATA")


@needs("mnist")
def test_real_mnist_reads_the_official_files() -> None:
    train, test = readers.read_mnist(DATA_ROOT, True), readers.read_mnist(DATA_ROOT, False)
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert train.images.float().mean().item() / 255 == pytest.approx(0.1307, abs=1e-3)


@needs("fashion_mnist")
def test_real_fashion_mnist_reads() -> None:
    train = readers.read_fashion_mnist(DATA_ROOT, True)
    assert train.images.shape == (60_000, 1, 28, 28) and train.labels[:5].tolist() == [9, 0, 0, 3, 0]
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert train.images.float().mean().item() / 255 == pytest.approx(0.2860, abs=1e-3)


@needs("cifar10")
def test_real_cifar10_reads_with_the_documented_statistics() -> None:
    train, test = readers.read_cifar10(DATA_ROOT, True), readers.read_cifar10(DATA_ROOT, False)
    assert train.images.shape == (50_000, 3, 32, 32) and len(test) == 10_000
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    mean = train.images.float().mean(dim=(0, 2, 3)) / 255
    torch.testing.assert_close(mean, torch.tensor([0.4914, 0.4822, 0.4465]), atol=1e-3, rtol=0)


# Short runs (a fraction of an epoch, tested on 2,560 images) that must land far above chance (0.10).
SHORT = [
    "trainer.max_epochs=1",
    "data.num_workers=0",
    "trainer.accelerator=cpu",
    "logger=csv",
    "data.val_size=1000",
    "data.batch_size=128",
    "+trainer.limit_test_batches=20",
]


@pytest.mark.parametrize(
    ("dataset", "train_batches", "floor"),
    [
        pytest.param("mnist", 80, 0.85, marks=needs("mnist")),
        pytest.param("fashion_mnist", 80, 0.65, marks=needs("fashion_mnist")),
        pytest.param("cifar10", 80, 0.30, marks=needs("cifar10")),
    ],
)
def test_smallcnn_learns_the_real_data(train_run, dataset: str, train_batches: int, floor: float) -> None:
    record = train_run(
        "model=smallcnn",
        f"data={dataset}",
        f"data.root={DATA_ROOT}",
        *SHORT,
        f"+trainer.limit_train_batches={train_batches}",
    )
    assert record["dataset"] == dataset and record["test_acc"] > floor, record["test_acc"]
