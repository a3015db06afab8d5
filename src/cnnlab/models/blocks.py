"""Building blocks shared by the convolutional models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_bn_relu(
    in_channels: int, out_channels: int, stride: int = 1, batch_norm: bool = True
) -> nn.Sequential:
    """3x3 conv -> BN -> ReLU.

    The conv has no bias when BN follows: BN subtracts the batch mean, which cancels any bias, and
    its own shift (beta) plays that role. Without BN the conv gets its bias back.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ClassifierHead(nn.Sequential):
    """Global average pool -> (dropout) -> linear."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(in_features, num_classes))
        super().__init__(*layers)


def init_weights(model: nn.Module) -> None:
    """He initialisation for ReLU convs, identity BN (the torchvision ResNet scheme)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class StagedConvNet(nn.Module):
    """Conv stages of growing width, then global average pool and a linear head.

    Subclasses define ``make_stage``; ``stages`` and ``head`` are what the analysis tools look at
    (feature maps per stage, Grad-CAM on the last stage).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int],
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        stages, channels = [], in_channels
        for width in widths:
            stages.append(self.make_stage(channels, width, batch_norm))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(channels, num_classes, dropout)
        init_weights(self)

    def make_stage(self, in_channels: int, out_channels: int, batch_norm: bool) -> nn.Module:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(images))
