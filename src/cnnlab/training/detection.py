"""The LightningModule that trains a dense detector: target assignment, losses, COCO-style mAP."""

from __future__ import annotations

import re
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from cnnlab.models.detector import assign_targets, decode_boxes
from cnnlab.training.module import OptimizerFactory, SchedulerFactory, TrainingModule

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # images, boxes, labels, masks


def metric_key(name: str) -> str:
    """A class name as a metric-name segment (no slashes or spaces)."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", name)


def detection_targets(boxes: torch.Tensor, labels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Padded (B, M, 4) boxes and (B, M) labels (-1 padding) as torchmetrics' list of per-image dicts."""
    return [{"boxes": b[lab >= 0], "labels": lab[lab >= 0]} for b, lab in zip(boxes, labels, strict=True)]


def detection_loss(
    net: nn.Module,
    outputs: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    radius: float = 1.5,
    box_weight: float = 2.0,
) -> dict[str, torch.Tensor]:
    """Focal loss on every cell's objectness, cross-entropy on the positive cells' classes and GIoU
    loss on their decoded boxes; the objectness sum is normalised by the number of positives."""
    objectness, codes, class_logits, points = net.flatten(outputs.float())
    positive, matched_boxes, matched_labels = assign_targets(points, boxes, labels, net.stride, radius)
    positives = positive.sum().clamp_min(1)
    objectness_loss = sigmoid_focal_loss(objectness, positive.float(), reduction="sum") / positives
    if positive.any():
        class_loss = F.cross_entropy(class_logits[positive], matched_labels[positive])
        cell_points = points.expand(len(boxes), -1, -1)[positive]
        predicted = decode_boxes(codes[positive], cell_points, net.stride)
        box_loss = generalized_box_iou_loss(predicted, matched_boxes[positive], reduction="mean")
    else:  # canvases without objects: only the objectness term teaches anything
        class_loss = box_loss = class_logits.sum() * 0.0
    total = objectness_loss + class_loss + box_weight * box_loss
    return {"loss": total, "objectness": objectness_loss, "class": class_loss, "box": box_loss}


class DetectionModule(TrainingModule):
    """Trains a ``models.detector.Detector``; logs ``{stage}/loss`` and its parts, ``val/map``,
    ``val/map_50``, and on the test set ``test/map``, ``test/map_50``, ``test/map_75`` and per-class
    AP (``test/ap/<class>``, AP averaged over IoU 0.5:0.95) from torchmetrics' MeanAveragePrecision."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        decay_norm_and_bias: bool = True,
        class_names: list[str] | None = None,
        radius: float = 1.5,
        box_weight: float = 2.0,
    ) -> None:
        super().__init__(net, optimizer, scheduler, decay_norm_and_bias)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.radius = radius
        self.box_weight = box_weight
        self.val_map = MeanAveragePrecision(box_format="xyxy", backend="faster_coco_eval")
        self.test_map = MeanAveragePrecision(
            box_format="xyxy", class_metrics=True, backend="faster_coco_eval"
        )

    @classmethod
    def config_options(cls, cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
        return {**super().config_options(cfg, datamodule), "class_names": datamodule.classes}

    def _shared_step(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, boxes, labels, _ = batch
        outputs = self(images)
        losses = detection_loss(self.net, outputs, boxes, labels, self.radius, self.box_weight)
        self.log_dict(
            {
                f"{stage}/{name}" if name == "loss" else f"{stage}/loss_{name}": v
                for name, v in losses.items()
            },
            on_step=False,
            on_epoch=True,
            prog_bar=False,
            batch_size=len(images),
        )
        return losses["loss"], outputs

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")[0]

    def _evaluate_step(self, batch: Batch, stage: str, metric: MeanAveragePrecision) -> None:
        images, boxes, labels, _ = batch
        _, outputs = self._shared_step(batch, stage)
        metric.update(self.net.decode(outputs, tuple(images.shape[-2:])), detection_targets(boxes, labels))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate_step(batch, "val", self.val_map)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate_step(batch, "test", self.test_map)

    def on_validation_epoch_end(self) -> None:
        values = self.val_map.compute()
        self.val_map.reset()
        self.log_dict({"val/map": values["map"], "val/map_50": values["map_50"]}, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        values = self.test_map.compute()
        self.test_map.reset()
        logged = {f"test/{key}": values[key] for key in ("map", "map_50", "map_75")}
        for class_id, ap in zip(values["classes"].tolist(), values["map_per_class"].tolist(), strict=True):
            logged[f"test/ap/{metric_key(self.class_names[class_id])}"] = ap
        self.log_dict(logged)

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, torch.Tensor]]:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.net.detect(images)
