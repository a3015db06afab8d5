"""Epochs-to-accuracy: how fast a run learns, the measure of the BatchNorm ablation."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback


class EpochsToAccuracy(Callback):
    """Remember the first epoch (1-based) whose ``monitor`` reaches ``target``; None if none does."""

    def __init__(self, target: float = 0.7, monitor: str = "val/acc") -> None:
        self.target = target
        self.monitor = monitor
        self.epochs: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.epochs is not None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) >= self.target:
            self.epochs = trainer.current_epoch + 1

    def state_dict(self) -> dict[str, int | None]:  # a resumed run keeps what it reached before
        return {"epochs": self.epochs}

    def load_state_dict(self, state_dict: dict[str, int | None]) -> None:
        self.epochs = state_dict.get("epochs")
