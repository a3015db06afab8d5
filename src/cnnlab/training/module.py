"""The LightningModule that trains any architecture as a classifier."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from cnnlab.errors import ConfigError, reason_of
from cnnlab.models.build import check_input_shape
from cnnlab.training.param_groups import apply_lr_scales, parameter_groups
from cnnlab.training.schedulers import replay
from cnnlab.training.tta import check_mode, tta_probabilities

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[..., LRScheduler]
# the number of steps a checkpoint's learning-rate schedule spans
SCHEDULE_STEPS = "cnnlab_schedule_steps"


def stage_metrics(metrics: MetricCollection) -> tuple[MetricCollection, ...]:
    """One copy of ``metrics`` per stage, logged as ``train/...``, ``val/...`` and ``test/...``."""
    return tuple(metrics.clone(prefix=f"{stage}/") for stage in ("train", "val", "test"))


class StepOutputs:
    """One stage's per-step predictions, labels and losses, kept on the device until its epoch ends.

    The torchmetrics figures then take one update per epoch instead of one per step: each update
    costs a sizeable share of a small model's step in Python (docs/performance.md#framework-overhead).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.predictions: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.losses: list[torch.Tensor] = []
        self.counts: list[int] = []

    def add(self, logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> None:
        self.predictions.append(logits.detach().argmax(dim=-1))
        self.labels.append(labels)
        self.losses.append(loss.detach().float())
        self.counts.append(len(labels))

    def flush_into(self, metrics: MetricCollection, loss: MeanMetric) -> None:
        """Update ``metrics`` with every buffered batch and ``loss`` with their image-weighted mean."""
        metrics.update(torch.cat(self.predictions), torch.cat(self.labels))
        losses = torch.stack(self.losses)
        loss.update(losses, weight=torch.tensor(self.counts, dtype=losses.dtype, device=losses.device))
        self.clear()


class TrainingModule(L.LightningModule):
    """What every task's module shares: the net, its optimizer over parameter groups, the per-step
    schedule, and the resolved run config stored in each checkpoint.

    ``optimizer`` and ``scheduler`` are factories (Hydra ``_partial_`` configs); the scheduler is
    called as ``scheduler(optimizer, total_steps=...)`` and stepped every optimizer step.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        decay_norm_and_bias: bool = True,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.decay_norm_and_bias = decay_norm_and_bias
        # set to override the optimizer config's LR (the LR finder's suggestion)
        self.lr: float | None = None
        # The resolved run config, stored in every checkpoint so that a checkpoint alone rebuilds its model.
        self.run_config: dict[str, Any] | None = None
        # NHWC inputs to match a channels_last net (the run's channels_last)
        self.channels_last = False
        # the steps this run's schedule spans, and a checkpoint being restored (its schedule is checked)
        self.schedule_steps: int | None = None
        self._restoring: tuple[Any, dict[str, Any]] | None = None

    @classmethod
    def config_options(cls, cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
        """This module's constructor options, besides the net, from the run config and its data."""
        return {
            "optimizer": instantiate(cfg.optimizer),
            "scheduler": instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
            "num_classes": datamodule.num_classes,
            "decay_norm_and_bias": cfg.get("decay_norm_and_bias", True),
        }

    @classmethod
    def check_network(cls, net: nn.Module, datamodule: Any) -> None:
        """Fail before training, with the fix, when ``net`` cannot take this data (a task may check)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def make_optimizer(self) -> Optimizer:
        """The configured optimizer over the net's parameter groups, with their LR scales applied."""
        groups = parameter_groups(self.net, self.decay_norm_and_bias)
        try:
            optimizer = self.optimizer_factory(groups, **({} if self.lr is None else {"lr": self.lr}))
        except (TypeError, ValueError) as error:  # e.g. optimizer.lr=abc: torch compares it with 0.0
            settings = getattr(
                self.optimizer_factory, "keywords", {}
            )  # Hydra's _partial_: a functools.partial
            text = [f"optimizer.{key}={value!r}" for key, value in settings.items() if isinstance(value, str)]
            culprit = f"{', '.join(text)} is not a number" if text else "the optimizer rejects its settings"
            raise ConfigError(
                f"{culprit} ({reason_of(error)}); fix the optimizer.* overrides, e.g. optimizer.lr=0.05"
            ) from error
        apply_lr_scales(optimizer)
        return optimizer

    def configure_optimizers(self) -> Optimizer | dict[str, Any]:
        optimizer = self.make_optimizer()
        if self.scheduler_factory is None:
            return optimizer
        total_steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(total_steps):
            raise ConfigError(
                "a learning-rate schedule needs a finite run: set trainer.max_epochs, or scheduler=none"
            )
        self.schedule_steps = int(total_steps)
        restoring, self._restoring = self._restoring, None
        # a checkpoint this trainer restores (not one another trainer, e.g. the LR finder's, loaded before);
        # checked before the scheduler below writes into the optimizer's groups
        if restoring is not None and restoring[0] is self.trainer:
            self._fit_restored_schedule(restoring[1], optimizer)
        scheduler = self.scheduler_factory(optimizer, total_steps=self.schedule_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _fit_restored_schedule(self, checkpoint: dict[str, Any], optimizer: Optimizer) -> None:
        """Rebuild a checkpoint's LR schedule for this run's length when the two differ.

        A scheduler's state holds its length (cosine's ``T_max``, one-cycle's ``total_steps``, ...), so a
        run resumed with more epochs would otherwise keep the old schedule, which ends early and, for
        cosine, climbs back up from zero. The rebuilt schedule continues at the checkpoint's step, so
        its LR jumps to the new schedule's value there.
        """
        states = checkpoint.get("lr_schedulers") or []
        saved_steps = checkpoint.get(SCHEDULE_STEPS)
        if saved_steps is None:  # a checkpoint from before the length was saved: compare the epochs
            epochs = [
                (c or {}).get("trainer", {}).get("max_epochs")
                for c in (checkpoint.get("cnnlab_config"), self.run_config)
            ]
            if None in epochs or epochs[0] == epochs[1]:
                return
        if not states or saved_steps == self.schedule_steps:
            return
        steps_taken = int(states[0].get("last_epoch", checkpoint["global_step"]))
        state, written = replay(self.scheduler_factory, optimizer, self.schedule_steps, steps_taken)
        saved_groups = checkpoint["optimizer_states"][0]["param_groups"]
        old_lr = saved_groups[0]["lr"]
        for saved_group, values in zip(saved_groups, written, strict=False):
            saved_group.update(values)
        states[0] = state
        log.warning(
            "the checkpoint's learning-rate schedule spans %s steps and this run %d: rebuilt for %d steps "
            "and continued at step %d, where its LR is %.3g (the checkpoint's was %.3g)",
            saved_steps if saved_steps is not None else "another number of",
            self.schedule_steps,
            self.schedule_steps,
            steps_taken,
            written[0]["lr"],
            old_lr,
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning restores the optimizer and scheduler states after configure_optimizers, from this dict
        self._restoring = (self._trainer, checkpoint)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["cnnlab_config"] = self.run_config
        if self.schedule_steps is not None:
            checkpoint[SCHEDULE_STEPS] = self.schedule_steps


class ClassifierModule(TrainingModule):
    """Cross-entropy training with top-1 accuracy and macro-F1 per stage (train / val / test).

    Targets may
    be class indices or class probabilities (MixUp / CutMix batches); ``tta`` adds test metrics under
    test-time augmentation (``test/tta_acc``, ...) next to the plain ones.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        label_smoothing: float = 0.0,
        decay_norm_and_bias: bool = True,
        tta: str | None = None,
    ) -> None:
        super().__init__(net, optimizer, scheduler, decay_norm_and_bias)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1_macro": MulticlassF1Score(num_classes, average="macro"),
            }
        )
        self.train_metrics, self.val_metrics, self.test_metrics = stage_metrics(metrics)
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.tta = check_mode(tta)
        self.tta_metrics = metrics.clone(prefix="test/tta_")
        self._step_outputs = {stage: StepOutputs() for stage in ("train", "val", "test")}
        # the test loop's logits and labels in test-set order, kept for the evaluation that follows
        self._test_logits: list[torch.Tensor] = []
        self.test_predictions: tuple[torch.Tensor, torch.Tensor] | None = None
        # images in the last test epoch (all processes)
        self.tested_images: int | None = None

    @classmethod
    def config_options(cls, cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
        return {
            **super().config_options(cfg, datamodule),
            "label_smoothing": cfg.loss.label_smoothing,
            "tta": cfg.get("tta"),
        }

    @classmethod
    def check_network(cls, net: nn.Module, datamodule: Any) -> None:
        check_input_shape(net, datamodule.shape, datamodule.num_classes, datamodule.name)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = self.criterion(logits, targets)  # takes class indices and class probabilities alike
        # a mixed image counts as its dominant class
        labels = targets.argmax(dim=-1) if targets.is_floating_point() else targets
        self._step_outputs[stage].add(logits, labels, loss)
        if stage == "test":
            self._test_logits.append(logits.detach())
        return loss

    def epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """A stage's figures over the steps since the last call (synced across processes); resets them."""
        outputs = self._step_outputs[stage]
        if not outputs.counts:
            return {}
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        loss: MeanMetric = getattr(self, f"{stage}_loss")
        if stage == "test":  # what was really tested: limit_test_batches may stop short of the test set
            self.tested_images = self._count_images(sum(outputs.counts))
        outputs.flush_into(metrics, loss)
        values = {f"{stage}/loss": loss.compute(), **metrics.compute()}
        loss.reset()
        metrics.reset()
        if stage == "test" and self.tta:
            values.update(self.tta_metrics.compute())
            self.tta_metrics.reset()
        return values

    def _count_images(self, count: int) -> int:
        """``count`` summed over the processes of a distributed run."""
        if self._trainer is None or self.trainer.world_size == 1:
            return count
        total = self.trainer.strategy.reduce(torch.tensor(count, device=self.device), reduce_op="sum")
        return int(total)

    def _log_epoch(self, stage: str) -> None:
        values = self.epoch_metrics(stage)
        if values:
            self.log_dict(values, prog_bar=True)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._shared_step(batch, "train")
        # The loss curve between epochs: one value every trainer.log_every_n_steps steps, when Lightning
        # writes to the loggers anyway (logging every step would cost a host sync and Python each step).
        if self.trainer.loggers and self.trainer._logger_connector.should_update_logs:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")
        if self.tta:
            images, labels = batch
            self.tta_metrics.update(tta_probabilities(self, images, self.tta), labels)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._test_logits, self.test_predictions = [], None

    def on_test_epoch_end(self) -> None:
        labels = self._step_outputs["test"].labels
        if labels:  # read before _log_epoch flushes the buffers
            self.test_predictions = (torch.cat(self._test_logits).float().cpu(), torch.cat(labels).cpu())
        self._test_logits = []
        self._log_epoch("test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).softmax(dim=-1)
