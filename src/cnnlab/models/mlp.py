"""MLP on raw pixels: the no-convolution baseline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten -> [linear -> ReLU -> dropout] per hidden layer -> linear.

    Hidden 512/128 gives 1,640,330 parameters on CIFAR-10 (3x32x32 inputs).
    """

    convolutional = False  # a classifier, but not a CNN (the reference doc compares CNNs with HOG)

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        hidden: Sequence[int] = (512, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_channels * image_size * image_size
        for width in hidden:
            layers += [nn.Linear(features, width), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            features = width
        layers.append(nn.Linear(features, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)
