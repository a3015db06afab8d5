"""The progress bar: Rich in a terminal, plain TQDM elsewhere, both counting epochs from 1.

Rich redraws live displays that turn into thousands of wrapped lines when stdout is a file
(CI, nohup, a pipe), so without a terminal the plain Lightning equivalent is used.

Lightning's bars name the epoch by ``trainer.current_epoch``, which counts from 0, while the log lines
(``epoch 1/10 took ...``), the checkpoints (``epoch_001.ckpt``) and every message count from 1: the
bars here say ``Epoch 1/10`` for the first of ten epochs.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf


def in_terminal() -> bool:
    return sys.stdout.isatty()


def epoch_description(current_epoch: int, max_epochs: int | None) -> str:
    """``Epoch 3/10`` for Lightning's ``current_epoch`` 2 of 10 epochs; ``Epoch 3`` without an end."""
    number = current_epoch + 1
    if max_epochs is None or max_epochs < 0:  # -1: train until stopped
        return f"Epoch {number}"
    return f"Epoch {number}/{max_epochs}"


class EpochFromOneTQDMProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar, its epoch counted from 1 and out of ``max_epochs``."""

    def on_train_start(self, trainer: L.Trainer, *_: Any) -> None:
        super().on_train_start(trainer)
        # Lightning calls no on_train_epoch_start for an epoch resumed partway: named here instead of
        # showing "Training: 0/?" until the next epoch
        if getattr(trainer.fit_loop, "restarted_mid_epoch", False):
            self.on_train_epoch_start(trainer)

    def init_validation_tqdm(self) -> Tqdm:
        # Lightning draws it on the line below the training bar, moving the cursor up and down ("\x1b[A"),
        # which a log file or a pipe keeps as stray "[A" lines; the training bar shows the validation
        # figures at the epoch's end anyway
        if self.trainer.state.fn == "validate":
            return super().init_validation_tqdm()
        return Tqdm(disable=True)

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        # Lightning's own version of this hook redraws the bar under its 0-based name, which a log file
        # keeps: the description is set before the one redraw instead
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        bar.set_description(epoch_description(trainer.current_epoch, trainer.max_epochs), refresh=False)
        bar.initial = 0
        bar.reset(total=convert_inf(self.total_train_batches))


class EpochFromOneRichProgressBar(RichProgressBar):
    """Lightning's Rich bar, its epoch counted from 1 (Lightning's says ``Epoch 0/9`` for the first of 10)."""

    def _get_train_description(self, current_epoch: int) -> str:
        description = epoch_description(current_epoch, self.trainer.max_epochs)
        # as wide as the validation bar's name, so that the two bars do not flicker between widths
        return f"{description:{len(self.validation_description)}}"


def progress_bar(refresh_rate: int = 1) -> ProgressBar:
    """Rich bar in a terminal; a TQDM bar refreshed every 100 batches at most elsewhere."""
    if in_terminal():
        return EpochFromOneRichProgressBar(refresh_rate=refresh_rate)
    return EpochFromOneTQDMProgressBar(refresh_rate=max(refresh_rate, 100))
