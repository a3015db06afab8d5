"""Stop cleanly at a preemption notice: a checkpoint after the current batch, then ``Preempted``."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment

from cnnlab.runs.preemption import Preempted

log = logging.getLogger(__name__)


class Preemption(L.Callback):
    """On one of ``signals`` during training: finish the batch, save ``dirpath/last.ckpt``, raise Preempted.

    Ctrl-C (SIGINT, when listed) does the same the first time, but never requeues a SLURM job: a person
    stopped the run. A second Ctrl-C stops at once, as
    Lightning's own handling of KeyboardInterrupt does, without a new checkpoint.

    The checkpoint is taken between two batches, where a resume continues exactly (the batch stream
    and the random generators are in it). SLURM sends SIGUSR1 (``--signal=USR1@120``) or, through
    submitit, SIGUSR2 before the time limit, and SIGTERM at preemption. Under DDP rank 0's notice
    decides, so every rank saves and stops after the same batch. Lightning's own SLURM handler
    (a checkpoint from inside the signal handler, then a requeue) is turned off: the run requeues its
    job itself once its record is written (``requeue``).
    """

    def __init__(
        self, dirpath: str, signals: Sequence[str] = ("SIGTERM", "SIGINT", "SIGUSR1"), requeue: bool = True
    ) -> None:
        self.dirpath = Path(dirpath)
        self.signals = [
            signal.Signals[name] if isinstance(name, str) else signal.Signals(name) for name in signals
        ]
        self.requeue = requeue
        self._received: int | None = None
        self._previous: dict[int, Any] = {}
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        environment = trainer._accelerator_connector.cluster_environment
        if isinstance(environment, SLURMEnvironment):
            environment.auto_requeue = False  # this callback saves and requeues instead

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._received, self._trainer = None, trainer
        if threading.current_thread() is not threading.main_thread():
            log.warning("training outside the main thread: preemption signals are not handled")
            return
        self._previous = {signum: signal.signal(signum, self._notice) for signum in self.signals}

    def _notice(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._received is not None:
            # a second Ctrl-C: the person at the terminal does not want to wait for the batch
            self._restore()
            signal.default_int_handler(signum, frame)
        if self._received is None:
            log.warning(
                "%s received: saving a checkpoint after this batch, then stopping%s",
                "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name,
                "; press Ctrl-C again to stop at once" if signum == signal.SIGINT else "",
            )
            launcher = self._trainer.strategy.launcher if self._trainer is not None else None
            if launcher is not None:  # the DDP ranks this process started hear it too
                launcher.kill(signum)
        self._received = signum

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        received = self._received
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            notice = torch.tensor([received or 0], device=pl_module.device)
            torch.distributed.broadcast(notice, src=0)
            received = int(notice.item()) or None
        if received is None:
            return
        checkpoint = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(checkpoint, weights_only=False)  # a checkpoint to resume from
        self._restore()
        # Ctrl-C is a person stopping the run, not a scheduler's notice: the SLURM job is not requeued
        requeue = self.requeue and received != signal.SIGINT
        raise Preempted(received, trainer.current_epoch, trainer.global_step, checkpoint, requeue)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
