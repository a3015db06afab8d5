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
from cnnlab.param_groups import apply_lr_scales, parameter_groups
from cnnlab.tta import check_mode, tta_probabilities

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[..., LRScheduler]


class ClassifierModule(L.LightningModule):
    """Cross-entropy training with top-1 accuracy and macro-F1 per stage (train / val / test).

    ``optimizer`` and ``scheduler`` are factories (Hydra ``_partial_`` configs); the scheduler is
    called as ``scheduler(optimizer, total_steps=...)`` and stepped every optimizer step. Targets may
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
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
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

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = self.criterion(logits, targets)  # takes class indices and class probabilities alike
        # a mixed image counts as its dominant class
        labels = targets.argmax(dim=-1) if targets.is_floating_point() else targets
        # only metric updates per step: Lightning's per-step self.log costs ~2 ms of Python (measured
        # with python -m bench), as much as a whole small-model step; the figures are logged per epoch
        getattr(self, f"{stage}_metrics").update(logits.detach(), labels)
        getattr(self, f"{stage}_loss").update(loss.detach(), weight=len(labels))
        return loss

    def _log_epoch(self, stage: str) -> None:
        """Log a stage's epoch figures (torchmetrics syncs them across processes) and reset them."""
        loss: MeanMetric = getattr(self, f"{stage}_loss")
        if loss.update_count == 0:
            return
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        values = {f"{stage}/loss": loss.compute(), **metrics.compute()}
        if stage == "test" and self.tta:
            values.update(self.tta_metrics.compute())
            self.tta_metrics.reset()
        self.log_dict(values, prog_bar=True)
        loss.reset()
        metrics.reset()

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

    def configure_optimizers(self) -> Optimizer | dict[str, Any]:
        groups = parameter_groups(self.net, self.decay_norm_and_bias)
        optimizer = self.optimizer_factory(groups, **({} if self.lr is None else {"lr": self.lr}))
        apply_lr_scales(optimizer)
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
