"""A U-Net on a classifier's convolutional stages: one class (or background) per pixel."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.models.backbone import Backbone
from cnnlab.models.blocks import conv_bn_relu, init_weights


class UNet(nn.Module):
    """Encoder: the backbone's stages. Decoder: from the deepest stage up, each block upsamples
    (bilinear) to the next shallower stage's size, concatenates that stage's output (the skip
    connection) and applies two conv3-BN-ReLU; a last block at the input's resolution takes the
    image itself as its skip, then a 1x1 conv gives ``num_classes + 1`` logits (0 = background).
    """

    task = "segment"

    def __init__(
        self, in_channels: int, num_classes: int, backbone: str = "smallcnn", final_width: int = 32
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, in_channels)
        self.num_classes = num_classes
        channels = self.backbone.channels
        self.decoder = nn.ModuleList()
        below = channels[-1]
        for skip in reversed(channels[:-1]):
            self.decoder.append(nn.Sequential(conv_bn_relu(below + skip, skip), conv_bn_relu(skip, skip)))
            below = skip
        self.final = nn.Sequential(
            conv_bn_relu(below + in_channels, final_width),
            conv_bn_relu(final_width, final_width),
            nn.Conv2d(final_width, num_classes + 1, 1),
        )
        init_weights(self.decoder)
        init_weights(self.final)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, num_classes + 1, H, W) per-pixel logits."""
        features = self.backbone(images)
        x = features[-1]
        for block, skip in zip(self.decoder, reversed(features[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        x = F.interpolate(x, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return self.final(torch.cat([x, images], dim=1))

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W) predicted mask of normalised images: 0 background, class + 1 elsewhere."""
        return self(images).argmax(dim=1)
