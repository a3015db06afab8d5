"""The LightningModule that trains any architecture as a classifier."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from cnnlab.errors import ConfigError
from cnnlab.training.param_groups import apply_lr_scales, parameter_groups
from cnnlab.training.tta import check_mode, tta_probabilities

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[..., LRScheduler]


class StepOutputs:
    """One stage's per-step predictions, labels and losses, kept on the device until its epoch ends.

    The torchmetrics figures then take one update per epoch instead of one per step: each update
    costs about 0.4 ms of Python (measured with ``python -m bench model=mlp``), a twentieth of a small
    model's step.
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
        # NHWC inputs to match a channels_last net (model.channels_last): faster convs on tensor cores
        self.channels_last = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def make_optimizer(self) -> Optimizer:
        """The configured optimizer over the net's parameter groups, with their LR scales applied."""
        groups = parameter_groups(self.net, self.decay_norm_and_bias)
        optimizer = self.optimizer_factory(groups, **({} if self.lr is None else {"lr": self.lr}))
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
        scheduler = self.scheduler_factory(optimizer, total_steps=int(total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["cnnlab_config"] = self.run_config


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
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.tta = check_mode(tta)
        self.tta_metrics = metrics.clone(prefix="test/tta_")
        self._step_outputs = {stage: StepOutputs() for stage in ("train", "val", "test")}

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = self.criterion(logits, targets)  # takes class indices and class probabilities alike
        # a mixed image counts as its dominant class
        labels = targets.argmax(dim=-1) if targets.is_floating_point() else targets
        self._step_outputs[stage].add(logits, labels, loss)
        return loss

    def epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """A stage's figures over the steps since the last call (synced across processes); resets them."""
        outputs = self._step_outputs[stage]
        if not outputs.counts:
            return {}
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        loss: MeanMetric = getattr(self, f"{stage}_loss")
        outputs.flush_into(metrics, loss)
        values = {f"{stage}/loss": loss.compute(), **metrics.compute()}
        loss.reset()
        metrics.reset()
        if stage == "test" and self.tta:
            values.update(self.tta_metrics.compute())
            self.tta_metrics.reset()
        return values

    def _log_epoch(self, stage: str) -> None:
        values = self.epoch_metrics(stage)
        if values:
            self.log_dict(values, prog_bar=True)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

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

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).softmax(dim=-1)
