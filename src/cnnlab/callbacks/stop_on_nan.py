"""Stop a run whose training loss turned NaN or infinite, before a checkpoint of broken weights is saved."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from cnnlab.errors import CnnlabError


class TrainingDiverged(CnnlabError):
    """The training loss became NaN or infinite (usually a learning rate that is too high)."""


class StopOnNonFiniteLoss(L.Callback):
    """Fail with a one-line error when the training loss is not finite.

    Each step's check stays on the device (no synchronisation); it is read every
    ``check_every_n_steps`` steps and before every checkpoint is written, so the last good checkpoint
    is never replaced by NaN weights. Lightning's ``detect_anomaly`` finds the operation at fault, at
    a large cost: turn it on with ``+trainer.detect_anomaly=true`` when debugging a model.
    """

    def __init__(self, check_every_n_steps: int = 50) -> None:
        self.check_every_n_steps = max(1, check_every_n_steps)
        self._bad: torch.Tensor | None = None
        self._first_bad_step: torch.Tensor | None = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        bad = ~torch.isfinite(loss.detach())
        if self._bad is None:
            self._bad = torch.zeros((), dtype=torch.bool, device=loss.device)
            self._first_bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
        step = torch.full_like(self._first_bad_step, trainer.global_step)
        self._first_bad_step = torch.where(bad & ~self._bad, step, self._first_bad_step)
        self._bad = self._bad | bad
        if trainer.global_step % self.check_every_n_steps == 0:
            self._raise_if_diverged(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise_if_diverged(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._raise_if_diverged(trainer)  # raising here keeps the file from being written

    def _raise_if_diverged(self, trainer: L.Trainer) -> None:
        if self._bad is None or not bool(self._bad):
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        last = next((c.last_model_path for c in trainer.checkpoint_callbacks if c.last_model_path), None)
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been saved yet"
        raise TrainingDiverged(
            f"the training loss became NaN or infinite at step {int(self._first_bad_step)} (epoch "
            f"{trainer.current_epoch + 1}, learning rate {lr:.3g}); lower optimizer.lr or clip gradients "
            f"(trainer.gradient_clip_val=1.0); {kept}"
        )
