"""ResNet for small images: the CIFAR variants of ResNet-18 / ResNet-34 (He et al., 2016)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from cnnlab.errors import ConfigError
from cnnlab.models.blocks import ClassifierHead, conv_bn_relu, init_weights


def residual_stage(in_channels: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` BasicBlocks; the first changes resolution / width through a 1x1 projection shortcut."""
    downsample = None
    if stride != 1 or in_channels != width:
        downsample = nn.Sequential(conv1x1(in_channels, width, stride), nn.BatchNorm2d(width))
    layers = [BasicBlock(in_channels, width, stride, downsample)]
    layers += [BasicBlock(width, width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """3x3 stem (no 7x7 conv, no max-pool: 32-pixel images keep their resolution), four stages of
    BasicBlocks, the first at full resolution and each next one at half, global average pool, linear.

    Blocks 2-2-2-2 (ResNet-18) have 11,173,962 parameters on CIFAR-10 and 3-4-6-3 (ResNet-34)
    21,282,122. ``stages[0]`` is the stem and ``stages[-1]`` the last residual stage.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        blocks: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        dropout: float = 0.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths) or not all(count >= 1 for count in blocks):
            raise ConfigError(
                f"model.blocks={list(blocks)} and model.widths={list(widths)} must have one positive "
                "block count per width"
            )
        stages: list[nn.Module] = [conv_bn_relu(in_channels, widths[0])]
        channels = widths[0]
        for index, (count, width) in enumerate(zip(blocks, widths, strict=True)):
            stages.append(residual_stage(channels, width, count, stride=1 if index == 0 else 2))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(channels, num_classes, dropout)
        init_weights(self)
        if zero_init_residual:
            # each block starts as the identity (Goyal et al., 2017): helps large-batch training
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(images))
