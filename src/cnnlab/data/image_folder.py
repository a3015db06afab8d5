"""A folder of labelled images (torchvision's ImageFolder layout): which files, which classes, which split.

Two layouts: split folders (``DIR/train/<class>/...`` with optional ``val/`` (or ``valid/``,
``validation/``) and ``test/``) and flat class folders (``DIR/<class>/...``). A split without its own
folder is drawn from the training images, stratified by class, with a split seed of its own. The
result is a table of (file, class, split) rows, written to the run directory as ``split.csv`` and read
back by ``evaluate``, ``predict`` and ``resume``, so a run is always tested on the images it was.

Without torch: ``python -m train`` checks the folder before the heavy imports.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# what PIL opens; every other file (.txt, .csv, .DS_Store, Thumbs.db, ...) is ignored
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
VAL_FOLDERS = ("val", "valid", "validation")
SPLITS = ("train", "val", "test")
SPLIT_FILE_COLUMNS = ("file", "class", "split")
# warn when the largest class has more than this many times the images of the smallest
IMBALANCE_RATIO = 10
# data=folder's data module (cnnlab.data.folder), named here for the checks made before torch loads
FOLDER_DATAMODULE = "cnnlab.data.folder.FolderDataModule"
LAYOUT_HINT = "one subfolder of images per class, or train/ (and optional val/, test/) holding them"


@dataclass(frozen=True)
class FolderSplit:
    """Every image of the folder: ``files[i]`` (relative to ``root``) of class ``labels[i]`` in split
    ``splits[i]``; ``classes`` in label order (sorted folder names, as ImageFolder)."""

    root: Path
    classes: list[str]
    files: list[str]
    labels: list[int]
    splits: list[str]

    def rows(self, split: str) -> list[int]:
        """The positions of ``split``'s images, in file order."""
        return [i for i, s in enumerate(self.splits) if s == split]

    def paths(self, split: str) -> list[Path]:
        return [self.root / self.files[i] for i in self.rows(split)]

    def split_labels(self, split: str) -> list[int]:
        return [self.labels[i] for i in self.rows(split)]

    def counts(self) -> dict[str, Counter]:
        """Images per class (by name) per split."""
        counts = {split: Counter() for split in SPLITS}
        for label, split in zip(self.labels, self.splits, strict=True):
            counts[split][self.classes[label]] += 1
        return counts

    def summary(self) -> str:
        """One line: the folder, its classes and the images per class in each split."""
        counts = self.counts()
        per_split = []
        for split in SPLITS:
            total = sum(counts[split].values())
            if total:
                per_class = ", ".join(f"{name} {counts[split][name]:,}" for name in self.classes)
                per_split.append(f"{split} {total:,} ({per_class})")
        return f"{self.root}: {len(self.classes)} classes; " + "; ".join(per_split)

    def imbalance(self) -> str | None:
        """A warning when the largest class has more than IMBALANCE_RATIO times the smallest's images."""
        totals = Counter(self.classes[label] for label in self.labels)
        if not totals:
            return None
        (largest, most), (smallest, fewest) = totals.most_common()[0], totals.most_common()[-1]
        if most <= IMBALANCE_RATIO * fewest:
            return None
        return (
            f"the classes are imbalanced: {largest} has {most:,} images, {smallest} {fewest:,} "
            f"(more than {IMBALANCE_RATIO}x); accuracy will favour the large classes: read the per-class "
            "figures and macro-F1, or collect more images of the small classes"
        )


def _visible(name: str) -> bool:
    # hidden entries: .DS_Store, macOS's ._x.jpg resource forks, .ipynb_checkpoints, ...
    return not name.startswith(".")


def class_folders(folder: Path) -> list[str]:
    """The class names under ``folder``: its visible subfolders, sorted as ImageFolder sorts them."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and _visible(e.name))


def image_files(folder: Path) -> list[str]:
    """The image files under ``folder`` and its subfolders (sorted, relative to ``folder``)."""
    found = []
    for directory, subfolders, names in os.walk(folder, followlinks=True):
        subfolders[:] = [name for name in subfolders if _visible(name)]
        for name in names:
            if _visible(name) and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(os.path.relpath(os.path.join(directory, name), folder))
    return sorted(found)


def _classes_of(folder: Path, path_option: str) -> dict[str, list[str]]:
    """``{class: [image files relative to folder]}`` of one split folder, checked."""
    classes = class_folders(folder)
    if not classes:
        loose = image_files(folder)
        if loose:
            raise DataError(
                f"{folder} holds {len(loose):,} images but no class folders; move each class's images "
                f"into a subfolder named after it ({folder}/<class>/...)"
            )
        raise DataError(f"{path_option} {folder} is empty; put {LAYOUT_HINT} in it")
    found = {}
    for name in classes:
        files = image_files(folder / name)
        if not files:
            raise DataError(
                f"the class folder {folder / name} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                "add its images or remove the folder"
            )
        found[name] = [str(Path(name) / file) for file in files]
    return found


def check_folder(path: str | Path | None) -> Path:
    """``data.path`` as an existing folder, or the one-line error saying what to pass."""
    if path is None or str(path) == "":
        raise ConfigError(f"data=folder needs data.path=<folder of images>: {LAYOUT_HINT}")
    folder = Path(str(path)).expanduser()
    if not folder.exists():
        raise DataError(f"data.path={folder} does not exist; pass the folder that holds {LAYOUT_HINT}")
    if not folder.is_dir():
        raise DataError(
            f"data.path={folder} is a file, not a folder; pass the folder that holds {LAYOUT_HINT}"
        )
    return folder.absolute()


def scan_folder(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """The folder's images by split folder (``train``, and ``val`` / ``test`` where they exist) and class;
    files relative to the folder. A flat folder is all ``train``."""
    folder = check_folder(path)
    if not (folder / "train").is_dir():
        if any((folder / name).is_dir() for name in (*VAL_FOLDERS, "test")):
            raise DataError(
                f"{folder} has a val/ or test/ folder but no train/; add {folder}/train/<class>/..., "
                "or use flat class folders only"
            )
        return {"train": _classes_of(folder, "data.path")}
    scanned = {"train": _prefixed(_classes_of(folder / "train", "the training folder"), "train")}
    val_folder = next((name for name in VAL_FOLDERS if (folder / name).is_dir()), None)
    for split, name in (("val", val_folder), ("test", "test")):
        if name is None or not (folder / name).is_dir():
            continue
        found = _classes_of(folder / name, f"the {split} folder")
        if sorted(found) != sorted(scanned["train"]):
            extra = sorted(set(found) - set(scanned["train"]))
            missing = sorted(set(scanned["train"]) - set(found))
            differences = "; ".join(
                part
                for part in (
                    f"{', '.join(extra)} not in train/" if extra else "",
                    f"no {', '.join(missing)}" if missing else "",
                )
                if part
            )
            raise DataError(
                f"the class folders of {folder / name} differ from those of {folder / 'train'} "
                f"({differences}); give {name}/ the same class folders as train/"
            )
        scanned[split] = _prefixed(found, name)
    return scanned


def _prefixed(found: dict[str, list[str]], folder: str) -> dict[str, list[str]]:
    return {name: [f"{folder}/{file}" for file in files] for name, files in found.items()}


def _draw(
    labels: Sequence[int], count: int, seed: int, split: str, classes: Sequence[str]
) -> tuple[list[int], list[int]]:
    """Positions (kept, drawn): ``count`` of ``labels`` drawn stratified by class."""
    from sklearn.model_selection import train_test_split  # sklearn loads only for a drawn split

    positions = list(range(len(labels)))
    try:
        kept, drawn = train_test_split(positions, test_size=count, stratify=labels, random_state=seed)
    except ValueError as error:
        smallest = min(Counter(labels).items(), key=lambda item: item[1])
        raise DataError(
            f"cannot draw a stratified {split} split of {count} images from {len(labels):,} "
            f"({error}; the smallest class, {classes[smallest[0]]}, has {smallest[1]}); add images, give "
            f"the folder a {split}/ folder of its own, or change data.{split}_fraction"
        ) from error
    return sorted(kept), sorted(drawn)


def draw_split(path: str | Path, val_fraction: float, test_fraction: float, seed: int) -> FolderSplit:
    """The folder's split: its own val/ and test/ folders, else images drawn from the training images
    (stratified; ``*_fraction`` of them, seeded by ``seed``)."""
    for name, fraction in (("val", val_fraction), ("test", test_fraction)):
        if not 0 <= fraction < 1:
            raise ConfigError(f"data.{name}_fraction={fraction} is invalid; use a fraction in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction} leaves no training "
            "images; use fractions that sum to less than 1"
        )
    folder = check_folder(path)
    scanned = scan_folder(folder)
    classes = sorted(scanned["train"])
    files, labels, splits = [], [], []
    for split, found in scanned.items():
        for label, name in enumerate(classes):
            files += found[name]
            labels += [label] * len(found[name])
            splits += [split] * len(found[name])
    pool = [i for i, split in enumerate(splits) if split == "train"]
    total = len(pool)
    for split, fraction in (("test", test_fraction), ("val", val_fraction)):
        if split in scanned:
            continue
        if split == "test" and fraction == 0:
            raise ConfigError(
                f"{folder} has no test/ folder and data.test_fraction=0: nothing to test on; "
                "give it a test/ folder or set data.test_fraction > 0"
            )
        count = round(fraction * total)
        if count == 0:
            continue
        # the same images for every seed and model: the split has its own seed, drawn from the training pool
        kept, drawn = _draw([labels[i] for i in pool], count, seed, split, classes)
        for position in drawn:
            splits[pool[position]] = split
        pool = [pool[position] for position in kept]
    return FolderSplit(folder, classes, files, labels, splits)


def write_split_file(split: FolderSplit, path: Path) -> None:
    """``split.csv``: one row per image (file relative to the folder, class name, split), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(SPLIT_FILE_COLUMNS)
        for name, label, which in zip(split.files, split.labels, split.splits, strict=True):
            writer.writerow([name, split.classes[label], which])
    os.replace(partial, path)


def read_split_file(path: Path, root: str | Path, classes: Sequence[str] | None) -> FolderSplit:
    """The split a run recorded; ``classes``: the run's class order (None: sorted names in the file)."""
    try:
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file))
    except OSError as error:
        raise DataError(
            f"cannot read the split file {path} ({error}); delete it to draw the split again"
        ) from error
    if not rows or tuple(rows[0]) != SPLIT_FILE_COLUMNS:
        raise DataError(
            f"{path} is not a split file (columns {', '.join(SPLIT_FILE_COLUMNS)}); delete it to draw the "
            "split again"
        )
    names = list(classes) if classes else sorted({row["class"] for row in rows})
    index = {name: label for label, name in enumerate(names)}
    unknown = sorted({row["class"] for row in rows} - set(index))
    if unknown:
        raise DataError(f"{path} names classes the run does not have ({', '.join(unknown)}); delete it")
    return FolderSplit(
        Path(str(root)).expanduser().absolute(),  # predict needs no images: the folder may have gone
        names,
        [row["file"] for row in rows],
        [index[row["class"]] for row in rows],
        [row["split"] for row in rows],
    )
