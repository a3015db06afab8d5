"""Callbacks: terminal-aware progress output, and throughput per epoch.

Rich redraws live displays that turn into thousands of wrapped lines when stdout is a file
(CI, nohup, a pipe), so without a terminal the plain Lightning equivalents are used.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    ModelSummary,
    ProgressBar,
    RichModelSummary,
    RichProgressBar,
    TQDMProgressBar,
)


def _in_terminal() -> bool:
    return sys.stdout.isatty()


def progress_bar(refresh_rate: int = 1) -> ProgressBar:
    """Rich bar in a terminal; a TQDM bar refreshed every 100 batches at most elsewhere."""
    if _in_terminal():
        return RichProgressBar(refresh_rate=refresh_rate)
    return TQDMProgressBar(refresh_rate=max(refresh_rate, 100))


def model_summary(max_depth: int = -1) -> ModelSummary:
    """Per-layer parameter table: Rich in a terminal, plain text elsewhere."""
    return RichModelSummary(max_depth=max_depth) if _in_terminal() else ModelSummary(max_depth=max_depth)


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
