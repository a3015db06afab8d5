"""A callback that signals its own process at a given batch: SIGKILL is a real crash, with no cleanup at all;
SIGTERM / SIGUSR1 are preemption notices (``group=true``: to the whole process group, DataLoader workers
included, as SLURM does).

It fires only where CNNLAB_TEST_KILL is set (so an in-process resume of the same overrides is safe)
and, with ``only_seed``, only in the sweep job of that seed.
"""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAt(L.Callback):
    def __init__(
        self,
        epoch: int,
        batch: int,
        seed: int | None = None,
        only_seed: int | None = None,
        signal: str = "SIGKILL",
        group: bool = False,
    ) -> None:
        self.epoch, self.batch, self.signal, self.group = epoch, batch, signal, group
        self.armed = bool(os.environ.get("CNNLAB_TEST_KILL")) and (only_seed is None or seed == only_seed)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx
    ) -> None:
        if self.armed and trainer.current_epoch == self.epoch and batch_idx == self.batch:
            self.armed = False
            signum = signal.Signals[self.signal]
            if self.group:
                os.killpg(os.getpgid(0), signum)
            else:
                os.kill(os.getpid(), signum)
