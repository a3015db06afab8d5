"""After every epoch, one log line with the time the epoch took and the time left, re-estimated from the
recent epochs; once per run, a warning when other work on the machine is slowing the run."""

from __future__ import annotations

import logging
import os
import time
from collections import deque

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

# epochs the time left is estimated from: recent enough to follow a change of load within a few
# epochs, enough of them that one slow epoch (a validation every n epochs, a checkpoint) does not swing it
RECENT_EPOCHS = 3
# a 1-minute load average this many times the cores the run may use: other work takes about half
# the CPU or more (the run alone stays below it: a torch thread per core, at most cores - 1 workers)
BUSY_LOAD_PER_CORE = 2.0


def format_duration(seconds: float) -> str:
    """``52 s``, ``34 min``, ``7.5 h``: as precise as an estimate deserves."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under taskset or a cgroup cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average, or None where the system has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


class RemainingTime(L.Callback):
    """Log ``epoch 3/40 took 52 s: about 32 min left`` at the end of every epoch.

    An epoch's time runs from the end of the one before (or the start of the first), so it covers
    training, validation and checkpointing. The time left is the mean of the last ``RECENT_EPOCHS``
    epochs times the epochs left: on a machine whose load changes, the estimate follows within a few
    epochs (the test and the evaluation at the end are not included). A resumed run estimates from the
    epochs it trains; an epoch resumed partway gets no line.

    Once per run, when the 1-minute load average is ``BUSY_LOAD_PER_CORE`` times the usable cores or
    more, a warning says that other work is slowing the run.
    """

    def __init__(self, recent_epochs: int = RECENT_EPOCHS) -> None:
        self.recent: deque[float] = deque(maxlen=recent_epochs)
        self.epoch_started: float | None = None
        self.warned_busy = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epoch_started is None:  # later epochs start when the one before ended
            self.epoch_started = time.perf_counter()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning validates before on_train_epoch_end, so the epoch's validation is counted
        if trainer.sanity_checking:
            return
        now = time.perf_counter()
        if self.epoch_started is None:
            # an epoch resumed partway (Lightning skips on_train_epoch_start then): shorter than a whole
            # one, so it is not timed; the next epoch is timed from here
            self.epoch_started = now
            return
        took, self.epoch_started = now - self.epoch_started, now
        self.recent.append(took)
        log.info(self.epoch_line(trainer.current_epoch + 1, trainer.max_epochs, took))
        self.warn_if_busy()

    def epoch_line(self, epoch: int, total: int | None, took: float) -> str:
        """``epoch 3/40 took 52 s: about 32 min left``, without the estimate when none can be made."""
        if total is None or total < 0:  # trained until stopped: no end to estimate
            return f"epoch {epoch} took {format_duration(took)}"
        line = f"epoch {epoch}/{total} took {format_duration(took)}"
        if epoch >= total or not self.recent:
            return line
        left = (total - epoch) * sum(self.recent) / len(self.recent)
        return f"{line}: about {format_duration(left)} left"

    def warn_if_busy(self) -> None:
        if self.warned_busy:
            return
        load, cores = load_average(), usable_cores()
        if load is None or load < BUSY_LOAD_PER_CORE * cores:
            return
        self.warned_busy = True
        log.warning(
            "the load average is %.1f on the %d core%s this run may use: other work is slowing the run, "
            "so its epochs take longer than on an idle machine and the time left may change",
            load,
            cores,
            "" if cores == 1 else "s",
        )
