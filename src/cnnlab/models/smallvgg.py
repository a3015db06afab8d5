"""SmallVGG: three VGG stages of two conv3-BN-ReLU and a max-pool, global average pool, linear."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cnnlab.models.blocks import StagedConvNet, conv_bn_relu


class SmallVGG(StagedConvNet):
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
        super().__init__(in_channels, num_classes, widths, batch_norm, dropout)

    def make_stage(self, in_channels: int, out_channels: int, batch_norm: bool) -> nn.Module:
        return nn.Sequential(
            conv_bn_relu(in_channels, out_channels, batch_norm=batch_norm),
            conv_bn_relu(out_channels, out_channels, batch_norm=batch_norm),
            nn.MaxPool2d(2),
        )
