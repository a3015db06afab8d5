"""Building blocks shared by the convolutional models."""

from __future__ import annotations

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
