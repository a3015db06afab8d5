"""`trainer=ddp`: two CPU processes (gloo) train one run into one directory with synchronised metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnlab.analysis.checkpoints import load_trained_model
from tests.conftest import TINY, run_cli


def evaluate(net: torch.nn.Module, datamodule, loader) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of ``net`` over a whole loader, in this one process."""
    correct = total = 0
    loss = 0.0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = datamodule.on_after_batch_transfer((images, labels), 0)
            logits = net(images)
            correct += int((logits.argmax(dim=1) == labels).sum())
            loss += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            total += len(labels)
    return correct / total, loss / total


def test_two_gloo_processes_write_one_run_with_whole_set_metrics(tmp_path: Path, tiny_data: Path) -> None:
    run_dir = tmp_path / "ddp"
    # 100 test and 40 validation images: each of the 2 ranks gets exactly half (no padded duplicates)
    args = [*TINY, "trainer=ddp", "trainer.devices=2", "trainer.max_epochs=2", "evaluate=false"]
    args += ["model=smallcnn", "data=mnist", "optimizer=adam", "data.augment=[]"]
    result = run_cli(
        ["-m", "train", f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", *args], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]

    # one run directory: no per-rank copies of the run (only rank 1's own log beside it)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]
    assert not list(tmp_path.glob("outputs")) and (run_dir / ".hydra" / "config.yaml").is_file()
    assert result.stdout.count("smallcnn on mnist: test acc") == 1  # rank 0 alone reports
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 2 and record["test_images"] == 100

    # the metrics the two processes reported are those of the whole sets, as one process computes them
    model = load_trained_model(run_dir / record["best_checkpoint"], data_root=tiny_data)
    model.datamodule.num_workers = 0
    model.datamodule.setup()
    test_acc, test_loss = evaluate(model.net, model.datamodule, model.datamodule.test_dataloader())
    val_acc, _ = evaluate(model.net, model.datamodule, model.datamodule.val_dataloader())
    # rank 0's half alone would give other figures (accuracy in steps of 1/50, another mean loss)
    assert record["test_acc"] == pytest.approx(test_acc, abs=1e-6)
    assert record["test_loss"] == pytest.approx(test_loss, rel=1e-4)
    assert record["best_val_acc"] == pytest.approx(val_acc, abs=1e-6)
