"""The airbench94 network (Keller Jordan's CIFAR-10 speed-run net), for the speedrun94 preset.

A frozen 2x2 whitening conv initialised from the training images' patch covariance, three
conv-pool-BN-GELU groups (64/256/256) whose convs start with identity (Dirac) filters, global max-pool,
a bias-free linear head scaled by 1/9. BN scales are frozen at 1 and BN shifts train with a 64x
larger LR, as in the original recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def frozen_scale_batch_norm(channels: int, momentum: float = 0.6, eps: float = 1e-12) -> nn.BatchNorm2d:
    # airbench's momentum is the weight of the running average; torch's is the weight of the new batch
    norm = nn.BatchNorm2d(channels, momentum=1 - momentum, eps=eps)
    norm.weight.requires_grad = False
    return norm


def identity_initialized_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 3x3 conv whose first ``in_channels`` filters start as the identity (an implicit residual)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(in_channels, out_channels)])
    return conv


class ConvGroup(nn.Sequential):
    """conv3 -> max-pool -> BN -> GELU -> conv3 -> BN -> GELU."""

    def __init__(self, in_channels: int, out_channels: int, bn_momentum: float) -> None:
        super().__init__(
            identity_initialized_conv(in_channels, out_channels),
            nn.MaxPool2d(2),
            frozen_scale_batch_norm(out_channels, bn_momentum),
            nn.GELU(),
            identity_initialized_conv(out_channels, out_channels),
            frozen_scale_batch_norm(out_channels, bn_momentum),
            nn.GELU(),
        )


class AirbenchNet(nn.Module):
    """~2 M parameters on CIFAR-10; the speedrun94 recipe's net (its figures: docs/performance.md)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (64, 256, 256),
        bn_momentum: float = 0.6,
        scaling_factor: float = 1 / 9,
        bias_lr_scale: float = 64.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        whiten_width = 2 * in_channels * 2 * 2  # +/- each eigenvector of the 2x2 patch covariance
        self.whiten = nn.Conv2d(in_channels, whiten_width, kernel_size=2, padding=0, bias=True)
        self.stages = nn.Sequential(
            *[
                ConvGroup(c_in, c_out, bn_momentum)
                for c_in, c_out in zip([whiten_width, *widths[:-1]], widths, strict=True)
            ]
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.scaling_factor = scaling_factor
        self.bias_lr_scale = bias_lr_scale
        self.act = nn.GELU()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.act(self.whiten(images)))
        return self.head(self.dropout(self.pool(features).flatten(1))) * self.scaling_factor

    @torch.no_grad()
    def initialize_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from normalised training images, then freeze them."""
        channels = images.shape[1]
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5)
        patches = patches.reshape(-1, channels * 4).double()
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues[:, None] + eps)).flip(0)
        filters = filters.view(-1, channels, 2, 2).to(self.whiten.weight)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))
        self.whiten.weight.requires_grad = False

    def param_groups(self) -> list[dict[str, Any]]:
        """BN shifts learn 64x faster with 1/64 the weight decay (so the same decay per step)."""
        norm_shifts = [p for name, p in self.named_parameters() if p.ndim == 1 and "stages" in name]
        shift_ids = {id(p) for p in norm_shifts}
        others = [p for p in self.parameters() if id(p) not in shift_ids]
        scale = self.bias_lr_scale
        return [
            {"params": others},
            {"params": norm_shifts, "lr_scale": scale, "weight_decay_scale": 1 / scale},
        ]
