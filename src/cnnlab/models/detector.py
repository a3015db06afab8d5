"""A single-stage dense detector (YOLO / FCOS style) on a classifier's convolutional stages.

The last backbone stage is upsampled and merged with the one before it (a two-level top-down
neck), and a shared conv tower predicts at every cell of that map: an objectness logit, a box
(YOLO encoding: the centre's offset from the cell centre and the log of the size, in strides) and
class logits. Training assigns each object to the cells near its centre (``assign_targets``);
inference keeps confident cells and applies per-class NMS (``decode``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import batched_nms, box_convert

from cnnlab.models.backbone import Backbone
from cnnlab.models.blocks import conv_bn_relu, init_weights

OBJECTNESS, BOX = 0, slice(1, 5)  # output channels; the class logits follow
PRIOR_PROBABILITY = 0.01  # initial objectness: most cells hold no object (RetinaNet's focal-loss prior)
MAX_LOG_SIZE = math.log(64.0)  # exp() of a box size stays finite early in training


def cell_centres(height: int, width: int, stride: int, device: torch.device | None = None) -> torch.Tensor:
    """(H * W, 2) x, y pixel centres of a feature map's cells, row by row."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    return (torch.stack([xs, ys], dim=-1).reshape(-1, 2).float() + 0.5) * stride


def encode_boxes(boxes: torch.Tensor, points: torch.Tensor, stride: int) -> torch.Tensor:
    """x1 y1 x2 y2 boxes -> (dx, dy, log w, log h) in strides, relative to ``points`` (same leading shape)."""
    centre_size = box_convert(boxes, "xyxy", "cxcywh")
    offset = (centre_size[..., :2] - points) / stride
    return torch.cat([offset, (centre_size[..., 2:] / stride).clamp_min(1e-6).log()], dim=-1)


def decode_boxes(codes: torch.Tensor, points: torch.Tensor, stride: int) -> torch.Tensor:
    """The inverse of ``encode_boxes``."""
    centre = points + codes[..., :2] * stride
    size = codes[..., 2:].clamp(max=MAX_LOG_SIZE).exp() * stride
    return box_convert(torch.cat([centre, size], dim=-1), "cxcywh", "xyxy")


def assign_targets(
    points: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, stride: int, radius: float = 1.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which cells answer for which object.

    points (P, 2); boxes (B, M, 4) and labels (B, M) padded with label -1. A cell is positive for an
    object when its centre lies inside the box within ``radius`` strides of the box centre (FCOS's
    centre sampling), or when it is the cell holding the box centre (so thin objects get one too);
    a cell claimed by several objects takes the smallest. Returns positive (B, P) bool, matched
    boxes (B, P, 4) and matched labels (B, P) (-1 where negative).
    """
    px, py = points[:, 0].view(1, -1, 1), points[:, 1].view(1, -1, 1)
    x1, y1, x2, y2 = (boxes[..., i].unsqueeze(1) for i in range(4))  # (B, 1, M)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    inside = (px > x1) & (px < x2) & (py > y1) & (py < y2)
    near = ((px - cx).abs() <= radius * stride) & ((py - cy).abs() <= radius * stride)
    centre_cell = ((px - cx).abs() <= stride / 2) & ((py - cy).abs() <= stride / 2)
    candidate = ((inside & near) | centre_cell) & (labels >= 0).unsqueeze(1)
    area = ((x2 - x1) * (y2 - y1)).expand_as(candidate)
    cost = torch.where(candidate, area, torch.full_like(area, float("inf")))
    best = cost.argmin(dim=-1)  # (B, P)
    positive = candidate.any(dim=-1)
    matched_boxes = torch.gather(boxes, 1, best.unsqueeze(-1).expand(-1, -1, 4))
    matched_labels = torch.where(positive, torch.gather(labels, 1, best), torch.full_like(best, -1))
    return positive, matched_boxes, matched_labels


class Detector(nn.Module):
    """Backbone stages -> top-down merge of the last two -> conv tower -> objectness, box, classes
    per cell."""

    task = "detect"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        backbone: str = "smallcnn",
        width: int = 96,
        tower_depth: int = 2,
        score_threshold: float = 0.05,
        nms_iou: float = 0.5,
        max_detections: int = 50,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, in_channels)
        self.num_classes = num_classes
        self.stride = self.backbone.strides[-2]
        self.top = nn.Conv2d(self.backbone.channels[-1], width, 1)
        self.lateral = nn.Conv2d(self.backbone.channels[-2], width, 1)
        self.tower = nn.Sequential(*[conv_bn_relu(width, width) for _ in range(tower_depth)])
        self.predict = nn.Conv2d(width, 5 + num_classes, 1)
        init_weights(self.top)
        init_weights(self.lateral)
        init_weights(self.tower)
        nn.init.normal_(self.predict.weight, std=0.01)
        nn.init.zeros_(self.predict.bias)
        with torch.no_grad():
            self.predict.bias[OBJECTNESS] = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_detections = max_detections

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 5 + classes, H / stride, W / stride): objectness, box code, class logits per cell."""
        *_, previous, last = self.backbone(images)
        merged = self.lateral(previous) + nn.functional.interpolate(
            self.top(last), size=previous.shape[-2:], mode="nearest"
        )
        return self.predict(self.tower(merged))

    def flatten(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per cell (row by row): objectness (B, P), box codes (B, P, 4), class logits (B, P, C) and
        the cell centres (P, 2)."""
        batch, _, height, width = outputs.shape
        cells = outputs.flatten(2).transpose(1, 2)  # (B, P, 5 + C)
        points = cell_centres(height, width, self.stride, outputs.device)
        return cells[..., OBJECTNESS], cells[..., BOX], cells[..., 5:], points

    @torch.no_grad()
    def decode(self, outputs: torch.Tensor, image_size: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        """Per image: ``boxes`` (K, 4) x1 y1 x2 y2 in pixels, ``scores`` (K,) and ``labels`` (K,) after NMS.

        The score is objectness times the class probability; classes are suppressed separately.
        """
        objectness, codes, class_logits, points = self.flatten(outputs.float())
        probabilities, labels = class_logits.softmax(dim=-1).max(dim=-1)
        scores = objectness.sigmoid() * probabilities
        boxes = decode_boxes(codes, points, self.stride)
        height, width = image_size
        boxes[..., 0::2] = boxes[..., 0::2].clamp(0, width)
        boxes[..., 1::2] = boxes[..., 1::2].clamp(0, height)
        detections = []
        for image_boxes, image_scores, image_labels in zip(boxes, scores, labels, strict=True):
            keep = image_scores > self.score_threshold
            image_boxes, image_scores, image_labels = (
                image_boxes[keep],
                image_scores[keep],
                image_labels[keep],
            )
            kept = batched_nms(image_boxes, image_scores, image_labels, self.nms_iou)[: self.max_detections]
            detections.append(
                {"boxes": image_boxes[kept], "scores": image_scores[kept], "labels": image_labels[kept]}
            )
        return detections

    def detect(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Detections of normalised images (B, C, H, W)."""
        return self.decode(self(images), tuple(images.shape[-2:]))
