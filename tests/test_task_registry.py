"""The task registry and the run record: every name in the registry resolves, every model config has a task,
a checkpoint's task comes from its model class, and every archived record reads in the current schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf

from cnnlab.analysis.checkpoints import task_of_config
from cnnlab.errors import CheckpointError
from cnnlab.runs.run_record import SCHEMA, RunRecord, read_run_record, write_run_record
from cnnlab.tasks import CLASSICAL, CLASSIFY, DETECT, SEGMENT, TASKS, get_task, summary_line, task_of_model
from tests.conftest import REPO

LAZY_NAMES = ("fit", "module", "evaluate", "evaluation_line", "predict")


@pytest.mark.parametrize("task", TASKS.values(), ids=list(TASKS))
def test_every_name_in_the_registry_resolves(task) -> None:
    for attribute in LAZY_NAMES:
        if getattr(task, attribute) is not None:
            assert callable(task.resolve(attribute)), f"{task.name}.{attribute}"


@pytest.mark.parametrize("config", sorted((REPO / "conf" / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_config_names_a_class_of_a_known_task(config: Path) -> None:
    model_class = get_class(OmegaConf.load(config)["_target_"])
    expected = {"detector": DETECT, "unet": SEGMENT, "hog_svm": CLASSICAL}.get(config.stem, CLASSIFY)
    assert task_of_model(model_class).name == expected


def test_a_checkpoint_of_a_moved_model_class_is_one_line() -> None:
    with pytest.raises(CheckpointError, match="cnnlab.models.gone.Net, which cannot be imported"):
        task_of_config({"model": {"_target_": "cnnlab.models.gone.Net"}}, Path("x.ckpt"))


def test_the_layout_fixture_checkpoint_is_a_classifier() -> None:
    checkpoint = torch.load(REPO / "tests" / "fixtures" / "mlp_mnist_layout_v1.ckpt", weights_only=True)
    assert task_of_config(checkpoint["cnnlab_config"]).name == CLASSIFY


@pytest.mark.parametrize(
    "run", sorted((REPO / "docs" / "runs").glob("*/metrics.json")), ids=lambda p: p.parent.name
)
def test_every_archived_record_reads_in_the_current_schema(run: Path) -> None:
    record = read_run_record(run.parent)
    assert record["schema"] == SCHEMA
    expected = CLASSICAL if "model_file" in record else CLASSIFY
    assert record["task"] == expected
    assert set(record) <= set(RunRecord.__annotations__), set(record) - set(RunRecord.__annotations__)
    assert summary_line(record).startswith(f"{record['model']} on {record['dataset']}: test acc ")


def test_the_writer_stamps_the_schema_and_the_reader_leaves_a_failed_record_without_a_task(tmp_path) -> None:
    write_run_record(tmp_path, {"status": "failed", "error": "boom"})
    assert json.loads((tmp_path / "metrics.json").read_text())["schema"] == SCHEMA
    assert "task" not in read_run_record(tmp_path)


@pytest.mark.parametrize(
    ("task", "figures", "line"),
    [
        (
            DETECT,
            {"test_map": 0.5, "test_map_50": 0.9, "best_val_map_50": 0.8},
            "test mAP 0.5000, mAP@0.5 0.9000",
        ),
        (SEGMENT, {"test_miou": 0.7, "test_pixel_acc": 0.99, "best_val_miou": None}, "best val mIoU n/a"),
        (CLASSICAL, {"test_acc": 0.58, "test_f1_macro": 0.57, "best_val_acc": 0.6}, "test acc 0.5800"),
    ],
)
def test_the_summary_line_shows_the_tasks_figures(task: str, figures: dict, line: str) -> None:
    record = {"task": task, "model": "m", "dataset": "d", "run_dir": "r", "params": 10, **figures}
    assert line in summary_line(record) and get_task(task).summary_line(record) == summary_line(record)


def test_a_dense_tasks_record_fields_leave_the_classification_figures_null() -> None:
    fields = get_task(DETECT).record_fields(0.8, {"test/map": 0.5, "test/map_50": 0.9, "test/ap/7": 0.4})
    assert fields["best_val_map_50"] == pytest.approx(0.8) and fields["test_acc"] is None
    assert fields["per_class_test"] == {"ap/7": 0.4}


@pytest.mark.parametrize("task", [CLASSIFY, CLASSICAL])
def test_a_classification_record_has_no_per_class_test_field(task: str) -> None:
    fields = get_task(task).record_fields(0.8, {"test/acc": 0.75, "test/f1_macro": 0.7})
    assert fields["best_val_acc"] == pytest.approx(0.8) and fields["test_acc"] == 0.75
    assert "per_class_test" not in fields
