"""SmallCNN: three stages of strided 3x3 convs, global average pool, linear."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cnnlab.models.blocks import StagedConvNet, conv_bn_relu


class SmallCNN(StagedConvNet):
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
        super().__init__(in_channels, num_classes, widths, batch_norm, dropout)

    def make_stage(self, in_channels: int, out_channels: int, batch_norm: bool) -> nn.Module:
        return nn.Sequential(
            conv_bn_relu(in_channels, out_channels, stride=1, batch_norm=batch_norm),
            conv_bn_relu(out_channels, out_channels, stride=2, batch_norm=batch_norm),
        )
