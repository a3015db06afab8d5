"""Smoke tests of the stand-alone benchmarks in cnnlab_bench on tiny inputs: each runs, and prints and
returns one figure per thing it compares. Timings are never asserted: they depend on the machine."""

from __future__ import annotations

from pathlib import Path

from cnnlab_bench import affine, augment, hog_extraction
from tests.conftest import CONF


def test_affine_times_every_implementation_on_one_batch(capsys) -> None:
    milliseconds = affine.main(["--batch=4", "--shape", "1", "8", "8", "--repeats=1", "--threads=1"])
    names = list(milliseconds)
    assert names[:3] == [
        "torchvision v2.RandomAffine, image by image",
        "cnnlab random_affine (torchvision grid + F.grid_sample)",
        "F.affine_grid + F.grid_sample",
    ]  # kornia's two rows follow when it is installed
    assert all(ms > 0 for ms in milliseconds.values())
    out = capsys.readouterr().out
    assert "batch (4, 1, 8, 8) uint8" in out
    for name in names:
        assert f" ms  {name}\n" in out


def test_augment_times_one_epoch_of_each_data_path(tiny_data: Path, capsys) -> None:
    overrides = [f"data.root={tiny_data}", "data.val_size=40", "data.batch_size=32", "data.num_workers=0"]
    seconds = augment.measure(CONF, ["data=mnist", *overrides])
    assert list(seconds) == list(augment.PATHS) and all(s > 0 for s in seconds.values())
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("data=mnist ") and "['RandomAffine']" in out[0]
    assert [line.split(" s  ", 1)[1] for line in out[1:]] == list(augment.PATHS)


def test_the_augment_command_finds_the_entry_points_configs(tiny_data: Path, capsys) -> None:
    """``main`` composes from ``train.CONFIG_DIR``, wherever the configs are installed."""
    augment.main([f"data.root={tiny_data}", "data.val_size=40", "data.num_workers=0"])
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(augment.PATHS)


def test_hog_extraction_times_the_loop_and_the_parallel_extractor(tiny_data: Path, capsys) -> None:
    seconds = hog_extraction.main([f"--root={tiny_data}", "--loop-images=20", "--repeat=1"])
    assert list(seconds) == ["per-image loop", "extract_hog(n_jobs=1)", "extract_hog(n_jobs=-1)"]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("300 CIFAR-10 images, HOG ")  # 5 x 40 training + 100 test images
    assert out[1].startswith("per-image loop") and " 20 images in " in out[1]
    assert all(" 300 images in " in line and line.endswith("img/s)") for line in out[2:])
