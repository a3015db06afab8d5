"""The LightningModule that trains a U-Net: cross-entropy plus soft Dice, mean IoU and pixel accuracy."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from cnnlab.training.detection import Batch, metric_key
from cnnlab.training.module import OptimizerFactory, SchedulerFactory, TrainingModule, stage_metrics


def soft_dice_loss(logits: torch.Tensor, masks: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - the mean soft Dice of the object classes, summed over the whole batch.

    The background is left out and the batch is pooled (as nnU-Net does): ink is a few percent of
    the pixels, and cross-entropy alone first learns to call everything background.
    """
    probabilities = logits.softmax(dim=1)[:, 1:]
    targets = F.one_hot(masks, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probabilities.dtype)
    dims = (0, 2, 3)
    overlap = (probabilities * targets).sum(dims)
    total = probabilities.sum(dims) + targets.sum(dims)
    return 1 - ((2 * overlap + smooth) / (total + smooth)).mean()


class SegmentationModule(TrainingModule):
    """Trains a ``models.unet.UNet`` on masks (0 background, class + 1 on ink): per-pixel
    cross-entropy plus ``dice_weight`` times ``soft_dice_loss``.

    Logs ``{stage}/loss``, ``{stage}/miou`` (torchmetrics' Jaccard index over the whole split, macro
    over the classes and the background), ``{stage}/pixel_acc``, and on the test set the IoU of each
    class (``test/iou/<class>``).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        decay_norm_and_bias: bool = True,
        class_names: list[str] | None = None,
        dice_weight: float = 1.0,
    ) -> None:
        super().__init__(net, optimizer, scheduler, decay_norm_and_bias)
        self.dice_weight = dice_weight
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.class_names = ["background", *(class_names or [str(i) for i in range(num_classes)])]
        classes = num_classes + 1
        metrics = MetricCollection(
            {
                "miou": MulticlassJaccardIndex(classes, average="macro"),
                "pixel_acc": MulticlassAccuracy(classes, average="micro"),
            }
        )
        self.train_metrics, self.val_metrics, self.test_metrics = stage_metrics(metrics)
        self.test_class_iou = MulticlassJaccardIndex(classes, average="none")

    @classmethod
    def config_options(cls, cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
        return {**super().config_options(cfg, datamodule), "class_names": datamodule.classes}

    def _shared_step(self, batch: Batch, stage: str) -> torch.Tensor:
        images, _, _, masks = batch
        logits = self(images)
        loss = F.cross_entropy(logits.float(), masks)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(logits.float(), masks)
        predicted = logits.detach().argmax(dim=1)
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        metrics.update(predicted, masks)
        if stage == "test":
            self.test_class_iou.update(predicted, masks)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        values = metrics.compute()
        metrics.reset()
        if stage == "test":
            for name, iou in zip(self.class_names, self.test_class_iou.compute().tolist(), strict=True):
                values[f"test/iou/{metric_key(name)}"] = iou
            self.test_class_iou.reset()
        self.log_dict(values, prog_bar=stage != "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.net.segment(images)
