"""The run record (``metrics.json``): its fields, its schema version, the one writer and the one reader.

Standard library only: Hydra's start-up (the sweep callbacks, the ``gpus`` launcher) and
``python -m results`` read records without importing torch or Lightning.

The record stays one flat JSON object, so it is a ``TypedDict``: its readers index it
(``record["test_acc"]``) as they index the JSON, and a type checker knows every field. Fields a run
does not have are absent or null (a classical run has no ``lr``, a detector no ``test_acc``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypedDict

RUN_RECORD = "metrics.json"
# 1: records written before the field existed (read as 1, then upgraded); 2: ``schema`` and ``task`` in
# every record of a finished run
SCHEMA = 2

# the fields the task registry, the HParams tab and the results tables name (cnnlab.tasks)
TASK = "task"
BEST_VAL_ACC = "best_val_acc"
TEST_ACC = "test_acc"
TEST_F1_MACRO = "test_f1_macro"
BEST_CHECKPOINT = "best_checkpoint"
STATUS = "status"


class RunRecord(TypedDict, total=False):
    """Every field a record may hold; which ones a run writes depends on its task and how it ended."""

    schema: int  # SCHEMA when written; older records are upgraded on reading
    # what ran (runs.record.common_record): every record of a run that got as far as its data
    status: str  # completed | debug | preempted | failed
    debug: str | None  # how a debug run was asked for (debug=fdr, trainer.fast_dev_run=...)
    task: str  # the cnnlab.tasks key: classify | detect | segment | classical
    model: str  # the model= choice (smallcnn)
    dataset: str
    seed: int
    folds: int | None  # k-fold cross-validation: this run validates on fold `fold` of `folds`
    fold: int | None
    overrides: list[str]  # the command line's and the sweep's overrides
    run_dir: str
    started_at: str  # ISO 8601, UTC, to the millisecond
    finished_at: str
    cuda_visible_devices: str | None
    versions: dict[str, str]  # cnnlab, torch, lightning
    git_commit: str | None
    git_dirty: bool | None
    data: dict[str, Any] | None  # the data's class names, image size, channels and normalisation
    # how long and on what (a network's fit; the classical fit has the first five)
    params: int
    epochs: int | None  # epochs trained; None for a classical fit
    train_time_s: float
    device: str
    train_images: int | None
    trainable_params: int
    max_epochs: int | None
    stopped_early: bool
    train_time_resumed_s: float | None  # a resumed run: the time after the resume
    val_images: int
    test_images: int | None  # the images tested (fewer with trainer.limit_test_batches)
    test_set_images: int | None
    batch_size: int
    loader: str | None  # the data path data.loader took
    optimizer: str
    lr: float | None
    lr_find_suggestion: float | None
    scheduler: str
    precision: str
    best_checkpoint: str | None  # relative to the run directory
    epochs_to_val_acc: int | None
    val_acc_target: float
    tta: str | None
    # classification figures (null for detection and segmentation)
    best_val_acc: float | None
    test_acc: float | None
    test_f1_macro: float | None
    test_loss: float | None
    test_tta_acc: float | None
    test_tta_f1_macro: float | None
    # detection and segmentation figures (cnnlab.tasks names them per task)
    best_val_map_50: float | None
    test_map: float | None
    test_map_50: float | None
    best_val_miou: float | None
    test_miou: float | None
    test_pixel_acc: float | None
    per_class_test: dict[str, float]  # "map_50/<class>" style test metrics, per class
    # the classical baseline (HOG + linear SVM)
    features: str
    feature_dim: int
    feature_params: dict[str, Any]
    features_cached: bool
    feature_time_s: float
    C: float
    converged: bool
    model_file: str
    # continuing: the checkpoint resumed from, and the shorter run this one trained for longer
    resumed_from: str | None
    extended_from: dict[str, Any]
    # a run stopped by a preemption notice or Ctrl-C (status preempted)
    signal: str
    preempted_at: str
    epoch: int  # counted from 1
    global_step: int
    checkpoint: str
    requeued_slurm_job: str | None
    # a failed run (status failed)
    error: str
    error_type: str
    failed_at: str
    before_training: bool
    # published with `python -m results archive`
    archived_from: str


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        json.dump(data, file, indent=2, sort_keys=False)
        file.write("\n")
    os.replace(file.name, path)


def write_run_record(run_dir: Path | str, record: RunRecord) -> RunRecord:
    """Write ``run_dir``/metrics.json atomically, stamped with the current schema; returns it."""
    stamped = RunRecord(schema=SCHEMA)
    stamped.update({key: value for key, value in record.items() if key != "schema"})  # type: ignore[typeddict-item]
    write_json_atomic(Path(run_dir) / RUN_RECORD, stamped)
    return stamped


def read_run_record(run_dir: Path | str) -> RunRecord:
    """The record in ``run_dir``, upgraded to the current schema (OSError / ValueError as json raises)."""
    path = Path(run_dir) / RUN_RECORD
    with path.open() as file:
        record = json.load(file)
    if not isinstance(record, dict):
        raise ValueError(f"{path} holds a JSON {type(record).__name__}, not a run record")
    return upgrade_record(record)


def upgrade_record(record: dict[str, Any]) -> RunRecord:
    """An older record in the current schema's terms; a current one unchanged."""
    upgraded: dict[str, Any] = dict(record)
    if upgraded.get("schema", 1) < 2 and upgraded.get(STATUS, "completed") in ("completed", "debug"):
        # schema 1 wrote `task` for networks only: a finished record without it is a classical fit (its
        # model file) or a classifier from before detection and segmentation
        upgraded.setdefault(TASK, "classical" if "model_file" in upgraded else "classify")
    upgraded["schema"] = SCHEMA
    return upgraded  # type: ignore[return-value]
