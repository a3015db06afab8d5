"""One run, whatever the model: compose it from the config, fit (network or classical baseline),
write the run record, then analyse the chosen checkpoint."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from cnnlab.data import ImageDataModule
from cnnlab.models.build import instantiate_model
from cnnlab.runs import resume
from cnnlab.runs.determinism import configure_determinism
from cnnlab.runs.distributed import is_global_zero
from cnnlab.runs.record import RUN_RECORD, common_record, summary_line, write_json_atomic
from cnnlab.training.fit import fit_network, quiet_library_noise


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test and write the run record; returns the record."""
    quiet_library_noise()
    output_dir = Path(cfg.paths.output_dir)
    finished = resume.finished_record(cfg, output_dir)  # refuses to overwrite; resume=true skips
    if finished is not None:
        print(f"already finished, skipped: {summary_line(finished)}")
        return finished
    resumed_from = resume.prepare_resume(cfg, output_dir)  # the checkpoint to continue from, validated
    configure_determinism(cfg)
    started_at = datetime.now(timezone.utc)
    L.seed_everything(cfg.seed, workers=True)
    datamodule: ImageDataModule = instantiate(cfg.data)
    model = instantiate_model(cfg)
    if cfg.model.get("backbone_ckpt"):  # a detector / U-Net starting from a trained classifier's stages
        from cnnlab.analysis.checkpoints import initialise_backbone

        initialise_backbone(model, cfg.model.backbone_ckpt)
    if isinstance(model, nn.Module):
        results = fit_network(cfg, model, datamodule, output_dir)
        if results is None:  # lr_find.enabled without apply: the plot and the suggestion are the output
            return {}
    else:
        from cnnlab.baselines.runner import fit_classical  # sklearn / skimage load only for classical models

        results = fit_classical(cfg, model, datamodule, output_dir)
    record = {**common_record(cfg, datamodule, started_at), **results}
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["resumed_from"] = os.path.relpath(resumed_from, output_dir) if resumed_from else None
    if not is_global_zero():  # DDP: rank 0 writes the record
        return record
    write_json_atomic(output_dir / RUN_RECORD, record)
    print(summary_line(record))
    if cfg.get("evaluate") and isinstance(model, nn.Module) and record.get("best_checkpoint"):
        from cnnlab.analysis.evaluation import evaluate_checkpoint  # matplotlib, captum: only when needed

        best = output_dir / record["best_checkpoint"]
        evaluate_checkpoint(best, output_dir / "eval", tensorboard=(output_dir / "tensorboard").is_dir())
    return record
