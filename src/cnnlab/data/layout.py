"""Where each dataset's files lie under the data root (torchvision's layouts), and the one-line error for
a file that is not there. Without torch: ``python -m train`` checks the files before the heavy imports,
and the readers find them here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import DataError

# Where Debian's `dataset-fashion-mnist` package installs the gzip idx files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Layout:
    """One dataset's files: ``folder`` under the data root, then the absolute ``elsewhere`` folders."""

    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    gzip_too: bool = False  # each file may also be the gzip-compressed ``<name>.gz``
    elsewhere: tuple[Path, ...] = ()


def _idx_files(prefix: str) -> tuple[str, ...]:
    return (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")


_MNIST_SPLITS = {"train_files": _idx_files("train"), "test_files": _idx_files("t10k"), "gzip_too": True}
LAYOUTS: dict[str, Layout] = {
    "cifar10": Layout(
        "CIFAR-10",
        "cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
    ),
    "mnist": Layout("MNIST", "MNIST/raw", **_MNIST_SPLITS),
    "fashion_mnist": Layout(
        "Fashion-MNIST", "FashionMNIST/raw", **_MNIST_SPLITS, elsewhere=(DEBIAN_FASHION_MNIST,)
    ),
}


def missing_error(title: str, path: Path, root: Path, folder: str) -> DataError:
    """Missing files, with the absolute paths; a root that points into the dataset's own folder (at
    ``cifar-10-batches-py`` or ``MNIST/raw`` itself) gets its parent suggested."""
    path, root = path.expanduser().absolute(), root.expanduser().absolute()
    parts = Path(folder).parts
    for depth in range(len(parts), 0, -1):
        if root.parts[-depth:] == parts[:depth]:
            parent = root.parents[depth - 1]
            return DataError(
                f"{title} not found: data root {root} points inside the dataset's folder {folder}; "
                f"pass data.root={parent}, the folder that holds {parts[0]}/ (python -m train also "
                f"reads CNNLAB_DATA={parent})"
            )
    return DataError(
        f"{title} not found: no {path} (data root {root}); pass data.root=<the folder that holds "
        f"{folder}> (python -m train also reads CNNLAB_DATA), or data.download=true to download it there"
    )


def find_files(layout: Layout, root: Path, train: bool) -> list[Path]:
    """The split's files in the order of ``layout``, each looked for first beside the previous one, then
    in the folders in order; a missing one is a DataError naming where it was expected."""
    folders = [root / layout.folder, *layout.elsewhere]
    found: list[Path] = []
    for name in layout.train_files if train else layout.test_files:
        names = (name, f"{name}.gz") if layout.gzip_too else (name,)
        searched = [found[-1].parent, *folders] if found else folders
        path = next((f / n for f in searched for n in names if (f / n).is_file()), None)
        if path is None:
            expected = folders[0] / (f"{name}[.gz]" if layout.gzip_too else name)
            raise missing_error(layout.title, expected, root, layout.folder)
        found.append(path)
    return found


def check_present(name: str, root: str | Path) -> None:
    """Raise the readers' DataError now if a file of dataset ``name`` is missing under ``root`` (no check
    for a dataset not laid out here)."""
    layout = LAYOUTS.get(name)
    if layout is None:
        return
    for train in (True, False):
        find_files(layout, Path(root).expanduser(), train)
