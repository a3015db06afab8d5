"""Lightning's ModelCheckpoint with epochs counted from 1 and last.ckpt as a link to a checkpoint of the
same weights rather than a second copy."""

from __future__ import annotations

import os
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from torch import Tensor


class ModelCheckpoint(LightningModelCheckpoint):
    """``{epoch}`` in file names counts from 1: ``epoch_001.ckpt`` holds the weights after the first
    epoch, as every log line and record counts epochs (a step checkpoint names the epoch in progress).

    With ``save_last="link"``, ``last.ckpt`` is a symbolic link to the checkpoint saved at the same
    step (a copy where links are not allowed), and a file of its own when no other checkpoint holds
    these weights. (Lightning's own link mode points last.ckpt at the previous best checkpoint after
    an epoch that did not improve, so a resume would go back in time.) Saving over a link replaces the
    link, never the checkpoint it points at. When training ends, nothing is written if a checkpoint of
    the final step exists already.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        with warnings.catch_warnings():
            # checkpoints already there are this run's own, being resumed or extended: a directory holding
            # a run is refused before anything starts unless the command continues it (runs/resume.py)
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            super().setup(trainer, pl_module, stage)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        with warnings.catch_warnings():
            # a run continued from another run's checkpoint (ckpt_path=<other run>/...) keeps its best
            # checkpoints in its own directory: the other run's are not its to track, nothing to warn about
            warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
            super().load_state_dict(state_dict)

    def format_checkpoint_name(
        self, metrics: dict[str, Tensor], filename: str | None = None, ver: int | None = None, **kwargs: Any
    ) -> str:
        if "epoch" in metrics:  # Lightning's is the 0-based epoch in progress
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, **kwargs)

    # Lightning has no public hook for these two; tests/test_lightning_contract.py fails loudly when
    # their signatures change
    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        if self.save_last == "link" and self._last_global_step_saved != trainer.global_step:
            self._last_checkpoint_saved = ""  # no checkpoint of these weights: write last.ckpt itself
        super()._save_last_checkpoint(trainer, monitor_candidates)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if trainer.is_global_zero and os.path.islink(filepath):
            os.remove(filepath)  # writing through the link would overwrite the best checkpoint
        super()._save_checkpoint(trainer, filepath)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        saved = [getattr(c, "_last_global_step_saved", None) for c in trainer.checkpoint_callbacks]
        if trainer.global_step in saved:
            return
        super().on_train_end(trainer, pl_module)
