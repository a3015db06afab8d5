from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from cnnlab.errors import ConfigError
from tests.conftest import run_entry

FIELDS = {
    "model",
    "dataset",
    "loader",
    "precision",
    "batch_size",
    "device",
    "train_images_per_s",
    "inference_images_per_s",
    "epoch_time_s",
    "plain_loop_images_per_s",
    "lightning_images_per_s",
    "overhead_ratio",
    "overhead_ms_per_step",
    "dataloader_images_per_s",
    "tensor_loader_images_per_s",
    "tensor_vs_dataloader",
    "peak_memory_mb",
    "time_to_acc",
}


def test_bench_writes_every_field(tiny_data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    run_dir = tmp_path / "bench"
    run_entry(
        "bench",
        [
            f"hydra.run.dir={run_dir}",
            f"data.root={tiny_data}",
            "data=mnist",
            "data.num_workers=0",
            "data.val_size=40",
            "data.batch_size=16",
            "bench.steps=3",
            "bench.warmup=1",
            "bench.time_to_acc=0.05",
            "trainer.max_epochs=2",
            "trainer.accelerator=cpu",
        ],
        monkeypatch,
    )
    results = json.loads((run_dir / "bench.json").read_text())
    assert results.keys() >= FIELDS
    assert (
        results["model"] == "smallcnn"
        and results["dataset"] == "mnist"
        and results["device"] == f"cpu ({os.cpu_count()} cores)"
    )
    for key in ("train_images_per_s", "inference_images_per_s", "plain_loop_images_per_s", "peak_memory_mb"):
        assert results[key] > 0
    assert results["overhead_ratio"] == results["plain_loop_images_per_s"] / results["lightning_images_per_s"]
    step_gap = 16 * (1 / results["lightning_images_per_s"] - 1 / results["plain_loop_images_per_s"])
    assert results["overhead_ms_per_step"] == pytest.approx(1000 * step_gap)
    assert results["time_to_acc"]["reached"] and results["time_to_acc"]["epoch"] == 1
    assert "framework overhead" in capsys.readouterr().out


# one item of each kind (the evaluate item reads the sweep's first job): every code path of the suite
DRY_RUN_ITEMS = ["smallcnn", "speedrun94 seed 2", "sweep on one GPU", "evaluate"]


def test_gpu_suite_dry_run_runs_one_item_of_each_kind_on_the_cpu(
    tiny_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "suite"
    tiny = [f"data.root={tiny_data}", "data.val_size=40", "data.batch_size=32", "data.num_workers=0"]
    chosen = "bench.items=[" + ",".join(f"'{name}'" for name in DRY_RUN_ITEMS) + "]"
    run_entry(
        "bench", ["suite=gpu", "bench.dry_run=true", chosen, f"hydra.run.dir={out}", *tiny], monkeypatch
    )
    suite = json.loads((out / "suite.json").read_text())
    assert [item["name"] for item in suite["items"]] == DRY_RUN_ITEMS
    assert suite["dry_run"] and suite["device"] == f"cpu ({os.cpu_count()} cores)"
    failed = {
        item["name"]: (item["status"], item["log"]) for item in suite["items"] if item["status"] != "ok"
    }
    assert not failed, {name: (out / log).read_text()[-2000:] for name, (_, log) in failed.items()}
    by_name = {item["name"]: item for item in suite["items"]}
    assert (
        by_name["smallcnn"]["figures"]["train_images_per_s"] > 0
        and "model=smallcnn" in by_name["smallcnn"]["command"]
    )
    assert 0 <= by_name["speedrun94 seed 2"]["figures"]["test_tta_acc"] <= 1
    assert by_name["sweep on one GPU"]["figures"]["jobs_completed"] == 2
    assert by_name["sweep on one GPU"]["figures"]["cuda_visible_devices"] == ["0", "0"]
    assert 0 <= by_name["evaluate"]["figures"]["accuracy"] <= 1
    table = (out / "suite.md").read_text()
    assert table.count("\n| ") == len(DRY_RUN_ITEMS) + 1 and "| smallcnn | ok |" in table
    assert "4/4 items ok" in capsys.readouterr().out


def test_every_gpu_suite_item_composes_into_a_valid_config(tmp_path: Path) -> None:
    """The items the dry run above leaves out: each command's overrides compose (nothing runs)."""
    from hydra import compose, initialize_config_dir

    from cnnlab_bench.suite import ENTRY, item_command, load_suite, selected_items
    from tests.conftest import CONF

    suite = load_suite(CONF, "gpu")
    items = selected_items(suite, None)
    names = [str(item.name) for item in items]
    for model in ("smallcnn", "smallvgg", "airbench94", "resnet18"):
        assert model in names and f"{model} compiled" in names
    assert {"speedrun94 seed 0", "speedrun94 seed 1", "sweep on one GPU", "evaluate"} <= set(names)
    done = {name: tmp_path for name in names}
    for item in items:
        command = item_command(item, tmp_path / "item", suite, done, dry_run=True, gpu=True)
        args = [
            a
            for a in command[3:]
            if a != "--multirun" and not a.startswith(("hydra", "ckpt_path", "output_dir"))
        ]
        args = [
            a.split(",")[0] if "=" in a and "," in a and "[" not in a else a for a in args
        ]  # a sweep's first job
        if item.kind == "evaluate":
            assert args == ["tensorboard=false"]
            continue
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose(ENTRY[str(item.kind)], args)
        assert cfg.trainer.accelerator == "gpu", item.name
    with pytest.raises(ConfigError, match="bench.items names 'nope', not in the suite"):
        selected_items(suite, ["nope"])


def test_suite_errors_are_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit) as unknown:
        run_entry("bench", ["suite=nope", f"hydra.run.dir={tmp_path / 'a'}"], monkeypatch)
    assert unknown.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: suite=nope is unknown; use one of: gpu"
    if not torch.cuda.is_available():  # the real suite needs a GPU; the dry run does not
        with pytest.raises(SystemExit) as no_gpu:
            run_entry("bench", ["suite=gpu", f"hydra.run.dir={tmp_path / 'b'}"], monkeypatch)
        assert no_gpu.value.code == 2
        assert "bench.dry_run=true runs every item" in capsys.readouterr().err.strip().splitlines()[-1]
