"""data=folder: a folder of the user's PNG / JPEG images trained, evaluated and predicted on through the
real entry points; the layouts, the split, decoding, the cache and every bad input's one line."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import folder
from cnnlab.data.folder import FolderDataModule, load_image
from cnnlab.data.image_folder import FolderSplit, draw_split, scan_folder
from cnnlab.errors import DataError
from tests.conftest import run_entry, tiny_train_args

CLASSES = ("cat", "dog", "owl")
COLOURS = {"cat": (220, 40, 40), "dog": (40, 40, 220), "owl": (40, 200, 40)}


def write_images(folder: Path, per_class: int, size: tuple[int, int] = (40, 30), start: int = 0) -> None:
    """``per_class`` noisy images of each class's colour, alternately PNG and JPEG, plus files to ignore."""
    rng = np.random.default_rng(start)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_class):
            noise = rng.integers(0, 40, (size[1], size[0], 3))
            pixels = (noise + np.array(COLOURS[name])).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
        (folder / name / "notes.txt").write_text("not an image")
        (folder / name / ".DS_Store").write_bytes(b"\0\1")
        (folder / name / "Thumbs.db").write_bytes(b"\0\1")


@pytest.fixture
def flat_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "pictures"
    write_images(folder, per_class=10)
    return folder


def folder_args(run_dir: Path, folder: Path, tmp_path: Path, *overrides: str) -> list[str]:
    return tiny_train_args(
        run_dir,
        tmp_path,  # no built-in dataset is read
        "data=folder",
        f"data.path={folder}",
        "model=smallcnn",
        "data.batch_size=8",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *overrides,
    )


def test_split_folders_and_flat_folders(tmp_path: Path) -> None:
    """train/ + valid/ + test/ are used as they are; a flat folder's val and test are drawn, stratified,
    by the split seed; class names are the sorted folder names; other files are ignored."""
    split_root = tmp_path / "split"
    write_images(split_root / "train", per_class=6)
    write_images(split_root / "valid", per_class=2, start=6)
    write_images(split_root / "test", per_class=2, start=8)
    split = draw_split(split_root, 0.1, 0.1, seed=0)
    assert split.classes == list(CLASSES)
    assert {name: sum(c.values()) for name, c in split.counts().items()} == {"train": 18, "val": 6, "test": 6}
    assert all(f.endswith((".png", ".jpg")) for f in split.files)

    flat = tmp_path / "flat"
    write_images(flat, per_class=10)
    drawn = draw_split(flat, 0.2, 0.1, seed=0)
    counts = drawn.counts()
    assert all(counts["val"][name] == 2 and counts["test"][name] == 1 for name in CLASSES)  # stratified
    assert drawn == draw_split(flat, 0.2, 0.1, seed=0)
    assert drawn.splits != draw_split(flat, 0.2, 0.1, seed=1).splits


def test_bad_folders_are_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist; pass the folder"):
        scan_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty; put one subfolder of images per class"):
        scan_folder(tmp_path / "empty")
    write_images(tmp_path / "lonely", per_class=2)
    (tmp_path / "lonely" / "zebra").mkdir()
    (tmp_path / "lonely" / "zebra" / "readme.txt").write_text("")
    with pytest.raises(DataError, match=r"zebra holds no images .*add its images or remove the folder"):
        scan_folder(tmp_path / "lonely")
    write_images(tmp_path / "split" / "train", per_class=2)
    write_images(tmp_path / "split" / "test", per_class=2)
    (tmp_path / "split" / "test" / "emu").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "split" / "test" / "emu" / "1.png")
    with pytest.raises(DataError, match=r"emu not in train/.*give test/ the same class folders as train/"):
        scan_folder(tmp_path / "split")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.new("RGB", (8, 8)).save(loose / "a.png")
    with pytest.raises(DataError, match=r"no class folders; move each class's images into a subfolder"):
        scan_folder(loose)


def test_any_image_pil_opens_is_converted(tmp_path: Path) -> None:
    """Grey, RGBA, palette (with transparency), BMP, WebP, TIFF and an animated GIF's first frame become
    (channels, size, size) uint8: the shorter side resized, the centre cropped."""
    pictures = {
        "grey.png": Image.new("L", (50, 30), 128),
        "alpha.png": Image.new("RGBA", (30, 50), (10, 20, 30, 0)),
        "palette.png": Image.new("P", (40, 40), 3),
        "photo.bmp": Image.new("RGB", (64, 48), (200, 0, 0)),
        "photo.webp": Image.new("RGB", (33, 33), (0, 200, 0)),
        "photo.tiff": Image.new("RGB", (20, 20), (0, 0, 200)),
    }
    pictures["palette.png"].info["transparency"] = 0
    for name, picture in pictures.items():
        picture.save(tmp_path / name, **({"transparency": 0} if name == "palette.png" else {}))
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    for name in [*pictures, "anim.gif"]:
        for channels in (1, 3):
            image = load_image(tmp_path / name, channels, 28)
            assert image.shape == (channels, 28, 28) and image.dtype == torch.uint8, name
    assert load_image(tmp_path / "anim.gif", 3, 28)[:, 14, 14].tolist()[0] > 200  # the first, red frame
    # centre crop, not squeeze: a wide image's left and right ends are cut off
    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, :10] = 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert load_image(tmp_path / "wide.png", 3, 10).max() == 0


def test_train_evaluate_predict_on_a_folder(
    flat_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The class names, image size, channels and normalisation land in the checkpoint's config and the
    record; split.csv fixes the test images; predict names the classes; a second run reads the cache."""
    run_dir = tmp_path / "run"
    run_entry("train", folder_args(run_dir, flat_folder, tmp_path, "data.val_fraction=0.2"), monkeypatch)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["dataset"] == flat_folder.name  # the folder's own name, in tables and summary lines
    assert record["data"]["classes"] == list(CLASSES)
    assert record["data"]["image_size"] == 32 and record["data"]["channels"] == 3
    assert record["data"]["mean"][0] > record["data"]["mean"][1]  # mostly red and blue images
    assert record["test_images"] == 3 and record["val_images"] == 6
    log = (run_dir / "train.log").read_text()
    assert "3 classes; train 21 (cat 7, dog 7, owl 7); val 6 (cat 2, dog 2, owl 2); test 3" in log
    with (run_dir / "split.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 30 and {row["split"] for row in rows} == {"train", "val", "test"}
    checkpoint = torch.load(next((run_dir / "checkpoints").glob("epoch_*.ckpt")), weights_only=False)
    saved = checkpoint["cnnlab_config"]["data"]
    assert saved["classes"] == list(CLASSES) and saved["num_classes"] == 3 and len(saved["std"]) == 3

    # evaluate tests exactly the images split.csv names, with the class names
    run_entry("evaluate", [f"ckpt_path={run_dir}", f"output_dir={tmp_path / 'eval'}"], monkeypatch)
    metrics = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())
    assert metrics["images"] == 3 and set(metrics["per_class_accuracy"]) == set(CLASSES)

    capsys.readouterr()
    run_entry("predict", [f"ckpt_path={run_dir}", f"image={flat_folder / 'owl'}", "top_k=3"], monkeypatch)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10 and all(": " in line and "owl" in line for line in lines)

    # predicting needs neither the image folder nor, from a moved run, its split file
    shutil.copy(flat_folder / "owl" / "001.png", tmp_path / "new-owl.png")
    shutil.move(flat_folder, tmp_path / "moved")
    (run_dir / "split.csv").unlink()
    capsys.readouterr()
    run_entry("predict", [f"ckpt_path={run_dir}", f"image={tmp_path / 'new-owl.png'}"], monkeypatch)
    assert "new-owl.png: owl" in capsys.readouterr().out
    shutil.move(tmp_path / "moved", flat_folder)

    again = tmp_path / "again"
    monkeypatch.setattr(folder, "_DECODED", {})  # as a new process: only the cache on disk has them
    run_entry("train", folder_args(again, flat_folder, tmp_path, "data.val_fraction=0.2"), monkeypatch)
    log = (again / "train.log").read_text()
    assert "from the cache" in log and "decoded" not in log


def test_split_folders_grey_and_another_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train/ and test/ folders, val drawn from train/, grey 40-pixel images for an MLP."""
    write_images(tmp_path / "digits" / "train", per_class=8)
    write_images(tmp_path / "digits" / "test", per_class=2, start=8)
    run_dir = tmp_path / "run"
    args = folder_args(run_dir, tmp_path / "digits", tmp_path, "data.channels=1", "data.image_size=40")
    run_entry("train", [*args, "model=mlp", "data.val_fraction=0.25"], monkeypatch)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["data"]["channels"] == 1 and record["data"]["image_size"] == 40
    assert record["test_images"] == 6 and record["val_images"] == 6 and record["train_images"] == 18


def test_a_corrupt_image_stops_before_training_or_is_skipped(
    flat_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (flat_folder / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (flat_folder / "cat" / "empty.png").write_bytes(b"")
    run_dir = tmp_path / "stopped"
    with pytest.raises(SystemExit) as stopped:
        run_entry("train", folder_args(run_dir, flat_folder, tmp_path), monkeypatch)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: cannot read ") and "1 other file is bad too" in error
    assert "data.on_bad_file=skip" in error
    assert not (run_dir / "checkpoints").exists()

    skipped_dir = tmp_path / "skipped"
    run_entry("train", folder_args(skipped_dir, flat_folder, tmp_path, "data.on_bad_file=skip"), monkeypatch)
    listed = (skipped_dir / "skipped_files.txt").read_text()
    assert "broken.jpg" in listed and "empty.png" in listed
    assert json.loads((skipped_dir / "metrics.json").read_text())["status"] == "completed"


def test_missing_folder_stops_before_the_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    with pytest.raises(SystemExit):
        run_entry("train", folder_args(tmp_path / "run", tmp_path / "nowhere", tmp_path), monkeypatch)
    error = capsys.readouterr().err
    assert "data.path=" in error and "does not exist; pass the folder that holds" in error


def test_streaming_decodes_per_batch(flat_folder: Path, tmp_path: Path) -> None:
    """data.stream=true: the training images are files decoded by the loader, the test split in memory."""
    datamodule = FolderDataModule(
        str(flat_folder), stream=True, num_workers=0, batch_size=4, cache_dir=str(tmp_path / "cache")
    )
    datamodule.setup()
    assert datamodule.loader_used == "torch"
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert len(datamodule.test_set) == 3 and datamodule.test_set.split.images.shape[1:] == (3, 32, 32)


def test_the_recorded_split_is_kept_when_the_folder_grows(flat_folder: Path, tmp_path: Path) -> None:
    """Resume, evaluate and predict read split.csv: images added later join no split."""
    settings = {"num_workers": 0, "cache_dir": str(tmp_path / "cache")}
    split_file = tmp_path / "run" / "split.csv"
    first = FolderDataModule(str(flat_folder), split_file=str(split_file), **settings)
    write_images(flat_folder, per_class=4, start=10)
    again = FolderDataModule(str(flat_folder), split_file=str(split_file), classes=first.classes, **settings)
    assert again.folder_split == first.folder_split and len(again.folder_split.files) == 30


def test_hog_svm_on_a_folder(
    flat_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "hog"
    run_entry("train", [*folder_args(run_dir, flat_folder, tmp_path), "model=hog_svm"], monkeypatch)
    assert json.loads((run_dir / "metrics.json").read_text())["data"]["classes"] == list(CLASSES)
    capsys.readouterr()
    run_entry("predict", [f"ckpt_path={run_dir}", f"image={flat_folder / 'dog'}", "top_k=1"], monkeypatch)
    assert "dog" in capsys.readouterr().out


def test_resume_keeps_the_recorded_split(
    flat_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run continued after images were added trains and tests on the images of its split.csv."""
    run_dir = tmp_path / "run"
    run_entry("train", folder_args(run_dir, flat_folder, tmp_path), monkeypatch)
    split_before = (run_dir / "split.csv").read_text()
    write_images(flat_folder, per_class=5, start=10)
    run_entry("train", [f"resume={run_dir}", "trainer.max_epochs=2"], monkeypatch)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["epochs"] == 2 and record["test_images"] == 3 and record["train_images"] == 24
    assert (run_dir / "split.csv").read_text() == split_before


def test_imbalanced_classes_are_warned_about(tmp_path: Path) -> None:
    """More than 10x between the largest and the smallest class is a warning naming both."""
    imbalanced = FolderSplit(tmp_path, list(CLASSES), ["x.png"] * 15, [0] * 12 + [1, 2, 2], ["train"] * 15)
    assert "cat has 12 images, dog 1 (more than 10x)" in imbalanced.imbalance()
    balanced = FolderSplit(tmp_path, list(CLASSES), ["x.png"] * 3, [0, 1, 2], ["train"] * 3)
    assert balanced.imbalance() is None
