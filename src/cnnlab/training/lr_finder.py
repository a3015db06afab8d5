"""The LR range test (Smith, 2017) with Lightning's Tuner.lr_find: plot, suggestion, record."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig

from cnnlab.errors import ConfigError
from cnnlab.runs.record import write_json_atomic

log = logging.getLogger(__name__)

PLOT = "lr_find.png"
RESULTS = "lr_find.json"


def find_learning_rate(
    cfg: DictConfig,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    output_dir: Path,
    precision: str | int,
) -> float:
    """Raise the LR exponentially over ``cfg.lr_find.num_training`` batches; save the loss-vs-LR plot
    and the curve in ``output_dir`` and return the suggestion (steepest descent of the loss).

    It runs on its own trainer (no callbacks, loggers or checkpoints), and the module's weights are
    restored afterwards, so the real run starts from the same initialisation.
    """
    settings = cfg.lr_find
    if not 0 < settings.min_lr < settings.max_lr:
        raise ConfigError(
            f"lr_find.min_lr={settings.min_lr} and lr_find.max_lr={settings.max_lr} need 0 < min_lr < max_lr"
        )
    finder_trainer: L.Trainer = instantiate(
        cfg.trainer,
        max_epochs=-1,
        max_steps=settings.num_training,  # also makes the schedule's step count finite
        callbacks=[],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        precision=precision,
    )
    finder = Tuner(finder_trainer).lr_find(
        module,
        datamodule=datamodule,
        min_lr=settings.min_lr,
        max_lr=settings.max_lr,
        num_training=settings.num_training,
        update_attr=False,
    )
    if finder is None:
        raise ConfigError("the LR finder cannot run with trainer.fast_dev_run; drop it or debug=fdr")
    suggestion = finder.suggestion()
    figure = finder.plot(suggest=suggestion is not None)
    figure.savefig(output_dir / PLOT, dpi=120, bbox_inches="tight")
    record: dict[str, Any] = {
        "suggestion": suggestion,
        "min_lr": settings.min_lr,
        "max_lr": settings.max_lr,
        "lr": finder.results["lr"],
        "loss": finder.results["loss"],
    }
    write_json_atomic(output_dir / RESULTS, record)
    if suggestion is None or not math.isfinite(suggestion):
        raise ConfigError(
            f"the LR finder found no clear descent over {len(finder.results['loss'])} batches (see "
            f"{output_dir / PLOT}); raise lr_find.num_training or set optimizer.lr yourself"
        )
    print(f"LR finder: suggested lr {suggestion:.3g} (plot: {output_dir / PLOT})")
    return float(suggestion)
