"""Smoke tests of the stand-alone benchmarks in cnnlab_bench on tiny inputs: each runs, and prints and
returns one figure per thing it compares. Timings are never asserted: they depend on the machine."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from cnnlab_bench import affine, augment, hog_extraction
from tests.conftest import CONF, TINY, run_entry


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
    """``main`` composes from ``cnnlab.configs.CONFIG_DIR``, wherever the configs are installed."""
    augment.main([f"data.root={tiny_data}", "data.val_size=40", "data.num_workers=0"])
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(augment.PATHS)


def test_hog_extraction_times_the_loop_and_the_parallel_extractor(tiny_data: Path, capsys) -> None:
    seconds = hog_extraction.main([f"--root={tiny_data}", "--loop-images=20", "--repeat=1"])
    assert list(seconds) == ["per-image loop", "extract_hog(n_jobs=1)", "extract_hog(n_jobs=-1)"]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("300 CIFAR-10 images, HOG ")  # 5 x 40 training + 100 test images
    assert out[1].startswith("per-image loop") and " 20 images in " in out[1]
    assert all(" 300 images in " in line and line.endswith("img/s)") for line in out[2:])


def test_export_speed_times_every_engine_at_every_batch_size(
    tiny_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    pytest.importorskip("onnxruntime", reason='the [export] extra: pip install -e ".[export]"')
    from cnnlab_bench import export_speed

    run_dir = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        args = [f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", *TINY, "model=smallcnn"]
        run_entry("train", [*args, "model.widths=[8,16,16]"], patch)
    capsys.readouterr()
    quick = ["--batches", "1", "2", "--threads=1", "--seconds=0.01", "--rounds=1"]
    monkeypatch.setattr(sys, "argv", ["export_speed", str(run_dir), *quick])
    export_speed.main()
    out = capsys.readouterr().out
    engines = ("PyTorch eager", "onnxruntime", "TorchScript")
    for engine in engines:
        for batch in (1, 2):
            assert re.search(rf"^SmallCNN +{engine} +batch +{batch}: +[0-9.]+ images/s$", out, re.MULTILINE)
    table = out[out.index("| model |") :].strip().splitlines()
    assert table[0] == "| model | engine | batch 1 (images/s) | batch 2 (images/s) |"
    assert [row.split(" | ")[1] for row in table[2:]] == list(engines)
