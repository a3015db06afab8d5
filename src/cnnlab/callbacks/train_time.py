"""Training time across resumes: each checkpoint carries the time trained up to it."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import Callback


class TrainTime(Callback):
    """Seconds of ``fit`` in this process (``this_part_s``) plus those of the checkpoint resumed from."""

    def __init__(self) -> None:
        self.before_s = 0.0  # trained before the checkpoint this run resumed from
        self._start: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    @property
    def this_part_s(self) -> float:
        return time.perf_counter() - self._start if self._start is not None else 0.0

    @property
    def total_s(self) -> float:
        return self.before_s + self.this_part_s

    def state_dict(self) -> dict[str, float]:
        return {"train_time_s": self.total_s}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.before_s = float(state_dict.get("train_time_s", 0.0))
