"""SmallCNN: three stages of strided 3x3 convs, global average pool, linear."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models.blocks import ClassifierHead, conv_bn_relu, init_weights


class SmallCNN(nn.Module):
    """Each stage is conv3-BN-ReLU then a stride-2 conv3-BN-ReLU that halves the resolution.

    With widths 32/64/128 it has 288,746 parameters on CIFAR-10 (no conv bias before BN).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (32, 64, 128),
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        stages, channels = [], in_channels
        for width in widths:
            stages.append(
                nn.Sequential(
                    conv_bn_relu(channels, width, stride=1, batch_norm=batch_norm),
                    conv_bn_relu(width, width, stride=2, batch_norm=batch_norm),
                )
            )
            channels = width
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(channels, num_classes, dropout)
        init_weights(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(images))
