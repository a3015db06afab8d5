from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

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
