"""One run, whatever the model: compose it from the config, fit (network or classical baseline),
write the run record, then analyse the chosen checkpoint."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from cnnlab.data import ImageDataModule
from cnnlab.data.folder import complete_config
from cnnlab.models.build import instantiate_model
from cnnlab.runs import resume
from cnnlab.runs.console import quiet_library_noise
from cnnlab.runs.determinism import configure_determinism
from cnnlab.runs.distributed import is_global_zero
from cnnlab.runs.preemption import Preempted, requeue_slurm_job
from cnnlab.runs.record import common_record, timestamp
from cnnlab.runs.run_record import BEST_CHECKPOINT, RunRecord, write_run_record
from cnnlab.tasks import Task, summary_line, task_of_model

log = logging.getLogger(__name__)


def extended_from(previous: Mapping[str, Any], task: Task) -> dict[str, Any]:
    """What a run trained for longer keeps of its shorter self's record: its length, its task's figures
    (best validation, test), its time."""
    kept = (
        "epochs",
        "max_epochs",
        task.best_val_field,
        *task.test_fields.values(),
        "train_time_s",
        "finished_at",
    )
    return {key: previous.get(key) for key in kept}


def train(cfg: DictConfig) -> RunRecord:
    """Fit, test and write the run record; returns the record."""
    quiet_library_noise()
    output_dir = Path(cfg.paths.output_dir)
    finished = resume.finished_record(cfg, output_dir)  # refuses to overwrite; resume=true skips
    if finished is not None:
        log.info("already finished, skipped: %s", summary_line(finished))
        return finished
    previous = resume.extended_record(output_dir)  # a finished run trained for longer
    # before the resume compares this run's settings with the checkpoint's, which were saved with it
    configure_determinism(cfg)
    complete_config(cfg)  # data=folder: the folder's classes, split and normalisation, before resuming
    resumed_from = resume.prepare_resume(cfg, output_dir)  # the checkpoint to continue from, validated
    started_at = datetime.now(timezone.utc)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # the seed is in the run's first line
    datamodule: ImageDataModule = instantiate(cfg.data)
    model = instantiate_model(cfg)
    if cfg.model.get("backbone_ckpt"):  # a detector / U-Net starting from a trained classifier's stages
        from cnnlab.analysis.checkpoints import initialise_backbone

        initialise_backbone(model, cfg.model.backbone_ckpt)
    task = task_of_model(model)
    fit = task.resolve("fit")  # the classical fit loads sklearn / skimage, and only for classical models
    try:
        result = fit(cfg, model, datamodule, output_dir)
    except Preempted as stop:
        record_preemption(cfg, datamodule, started_at, stop, resumed_from)
        raise
    if result is None:  # lr_find.enabled without apply: the plot and the suggestion are the output
        return {}
    # for the evaluation: the test loop's logits, and the open TensorBoard logger (one event file)
    test_predictions, tensorboard = result.test_predictions, result.tensorboard
    try:
        record: RunRecord = {**common_record(cfg, datamodule, started_at), **result.record}
        record["finished_at"] = timestamp(datetime.now(timezone.utc))
        record["resumed_from"] = os.path.relpath(resumed_from, output_dir) if resumed_from else None
        if previous is not None:
            record["extended_from"] = extended_from(previous, task)
        if not is_global_zero():  # DDP: rank 0 writes the record
            return record
        record = write_run_record(output_dir, record)
        # a network's checkpoint is analysed here; the classical fit writes its evaluation itself
        if cfg.get("evaluate") and task.is_network and record.get(BEST_CHECKPOINT):
            from cnnlab.analysis.evaluation import evaluate_checkpoint  # matplotlib, captum: only when needed

            evaluate_checkpoint(
                output_dir / record[BEST_CHECKPOINT],
                output_dir / "eval",
                overwrite=previous is not None,  # a run trained for longer replaces its shorter self's
                tensorboard=tensorboard.experiment if tensorboard else (output_dir / "tensorboard").is_dir(),
                test_predictions=test_predictions,  # no second pass over the test set
            )
    finally:
        close = getattr(tensorboard, "close", None)  # cnnlab.loggers.TensorBoardLogger keeps it open
        if close is not None:
            close()
    log.info(summary_line(record))  # the run's last line
    return record


def record_preemption(
    cfg: DictConfig,
    datamodule: ImageDataModule,
    started_at: datetime,
    stop: Preempted,
    resumed_from: Path | None,
) -> None:
    """The record of a run stopped by a preemption notice (resumable: ``resume=true`` continues it)."""
    if not is_global_zero():
        return
    output_dir = Path(cfg.paths.output_dir)
    record: RunRecord = {
        **common_record(cfg, datamodule, started_at),
        "status": "preempted",
        "signal": stop.signal_name,
        "preempted_at": timestamp(datetime.now(timezone.utc)),
        "epoch": stop.epoch + 1,  # counted from 1, as everywhere a person reads it
        "global_step": stop.step,
        "checkpoint": os.path.relpath(stop.checkpoint, output_dir),
        "resumed_from": os.path.relpath(resumed_from, output_dir) if resumed_from else None,
        "requeued_slurm_job": None,
    }
    write_run_record(output_dir, record)
    if stop.requeue:
        record["requeued_slurm_job"] = requeue_slurm_job()
        write_run_record(output_dir, record)
    then = (
        f"SLURM job {record['requeued_slurm_job']} requeued"
        if record["requeued_slurm_job"]
        else "continue it"
    )
    # in the words of the resume line that continues it: "in epoch 2, after step 152"
    where = resume.training_position(record["epoch"], stop.step, mid_epoch=True)
    print(
        f"{stop.reason} {where}: saved {record['checkpoint']}; "
        f"{then} with python -m train resume={output_dir}"
    )
