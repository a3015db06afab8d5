"""Loggers flushed with every checkpoint, so a killed run keeps the metrics its checkpoint covers."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback


class FlushLogsOnCheckpoint(Callback):
    """Write the loggers' buffered rows and events to disk whenever a checkpoint is saved.

    CSV rows and TensorBoard events are otherwise buffered (TensorBoard for up to two minutes), so a
    killed run would lose metrics that its checkpoint already covers; a resumed run never logs those again.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            logger.save()
