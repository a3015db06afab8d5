"""After the first epoch of a run, one log line with the time it took and the time left."""

from __future__ import annotations

import logging
import time

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``52 s``, ``34 min``, ``7.5 h``: as precise as an estimate deserves."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class RemainingTime(L.Callback):
    """Log ``epoch 1/40 took 52 s: about 34 min left`` once, when this process's first epoch ends.

    The epoch's time covers training and validation; the estimate assumes every epoch costs the same
    (the test and the evaluation at the end are not included). A resumed run estimates from the first
    epoch it trains.
    """

    def __init__(self) -> None:
        self.started: float | None = None
        self.reported = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning validates before on_train_epoch_end, so the epoch's validation is counted
        if self.reported or self.started is None or trainer.sanity_checking:
            return
        self.reported = True
        took = time.perf_counter() - self.started
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs
        if total is None or total < 0 or total <= epoch:
            log.info("epoch %d took %s", epoch, format_duration(took))
            return
        left = (total - epoch) * took
        log.info(
            "epoch %d/%d took %s: about %s left", epoch, total, format_duration(took), format_duration(left)
        )
