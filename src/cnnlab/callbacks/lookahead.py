"""Lookahead with a growing pull, as in the airbench94 recipe: a slow copy of the weights that the
fast (optimised) weights are reset to every few steps."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from cnnlab.errors import ConfigError


class Lookahead(L.Callback):
    """Every ``every_n_steps`` optimizer steps from epoch ``start_epoch`` on, move a slow copy of the
    network's floating-point state (weights and BN statistics) towards the current one and copy it back.

    The slow copy keeps ``rho = decay_base ** every_n_steps * (step / total_steps) ** decay_power`` of
    itself: it barely holds the weights back early and averages strongly at the end. The weights are
    also reset to the slow copy at each epoch's end, so validation, checkpoints and the test see it.
    """

    def __init__(
        self, start_epoch: int = 3, every_n_steps: int = 5, decay_base: float = 0.95, decay_power: float = 3.0
    ) -> None:
        if start_epoch < 0 or every_n_steps < 1 or not 0 < decay_base < 1 or decay_power < 0:
            raise ConfigError(
                "lookahead needs start_epoch >= 0, every_n_steps >= 1, 0 < decay_base < 1 and "
                f"decay_power >= 0 (got {start_epoch}, {every_n_steps}, {decay_base}, {decay_power})"
            )
        self.start_epoch = start_epoch
        self.every_n_steps = every_n_steps
        self.decay_base = decay_base
        self.decay_power = decay_power
        self.slow: list[torch.Tensor] | None = None

    @staticmethod
    def _fast(pl_module: L.LightningModule) -> list[torch.Tensor]:
        return [t for t in pl_module.state_dict().values() if t.is_floating_point()]

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if trainer.current_epoch < self.start_epoch or step % self.every_n_steps:
            return
        fast = self._fast(pl_module)
        if self.slow is None:
            self.slow = [t.detach().clone() for t in fast]
            return
        progress = step / trainer.estimated_stepping_batches
        rho = self.decay_base**self.every_n_steps * progress**self.decay_power
        for slow, weights in zip(self.slow, fast, strict=True):
            slow.lerp_(weights, 1 - rho)
            weights.copy_(slow)

    @torch.no_grad()
    def _reset_to_slow(self, pl_module: L.LightningModule) -> None:
        if self.slow is not None:
            for slow, weights in zip(self.slow, self._fast(pl_module), strict=True):
                weights.copy_(slow)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning validates before on_train_epoch_end: validation and the checkpoints it triggers
        # must see the slow weights too
        if trainer.training:
            self._reset_to_slow(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset_to_slow(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.slow = state_dict["slow"]
