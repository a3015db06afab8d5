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
from torchmetrics import MetricCollection
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
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        metrics.update(logits.detach(), labels)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(labels),
            sync_dist=stage != "train",
        )
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")
        if self.tta:
            images, labels = batch
            self.tta_metrics.update(tta_probabilities(self, images, self.tta), labels)
            self.log_dict(self.tta_metrics, on_step=False, on_epoch=True)

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
