"""Training images per second, per epoch, measured over the whole epoch loop."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class EpochThroughput(Callback):
    """Log training images per second for each epoch (``train/images_per_s``).

    The clock covers the whole epoch loop (data, forward, backward, optimizer), which is what a user
    waits for; the device is synchronised only at the epoch's ends.
    """

    def __init__(self) -> None:
        self.images = 0
        self.start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module.device)
        self.images, self.start = 0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.images += len(batch[0])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(pl_module.device)
        elapsed = time.perf_counter() - self.start
        if self.images and elapsed > 0:
            pl_module.log("train/images_per_s", self.images * trainer.world_size / elapsed)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
