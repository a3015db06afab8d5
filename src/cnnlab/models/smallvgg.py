"""SmallVGG: three VGG stages of two conv3-BN-ReLU and a max-pool, global average pool, linear."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.models.blocks import ClassifierHead, conv_bn_relu, init_weights


class SmallVGG(nn.Module):
    """[conv3-BN-ReLU] x2 + max-pool per stage, widths 64/128/256.

    1,148,874 parameters on CIFAR-10 (stages 38,848 / 221,696 / 885,760, head 2,570). The course
    table quotes 1,149,770 because it counts conv biases that its own code disables: a bias before
    BN is cancelled by BN, so the convs here have none (they get one with ``batch_norm=False``).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (64, 128, 256),
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        stages, channels = [], in_channels
        for width in widths:
            stages.append(
                nn.Sequential(
                    conv_bn_relu(channels, width, batch_norm=batch_norm),
                    conv_bn_relu(width, width, batch_norm=batch_norm),
                    nn.MaxPool2d(2),
                )
            )
            channels = width
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(channels, num_classes, dropout)
        init_weights(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(images))
