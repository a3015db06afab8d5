"""Transfer learning: torchvision's ImageNet ResNet-18 with a new head for the dataset's classes."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from cnnlab.errors import ConfigError, DataError
from cnnlab.models.blocks import ClassifierHead

log = logging.getLogger(__name__)


def cached_weights_path(weights: ResNet18_Weights) -> Path:
    """Where torch hub looks for (and downloads) the weights file: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def imagenet_weights(name: str) -> ResNet18_Weights:
    try:
        return ResNet18_Weights[name]
    except KeyError:
        choices = ", ".join(ResNet18_Weights.__members__)
        raise ConfigError(f"model.weights={name!r} is unknown; use one of {choices}, or null") from None


def load_state_dict(weights: ResNet18_Weights) -> dict[str, torch.Tensor]:
    """The weights' state dict, from the torch hub cache or downloaded into it."""
    path = cached_weights_path(weights)
    try:
        return weights.get_state_dict(progress=False)
    except OSError as error:  # no network: URLError is an OSError
        raise DataError(
            f"the {weights.name} weights for resnet18 are not in {path} and could not be downloaded "
            f"({getattr(error, 'reason', error)}); place {weights.url} there, or train from scratch "
            "with model.weights=null"
        ) from error
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:  # a truncated or corrupt file
        raise DataError(
            f"{path} is not a valid weights file ({str(error).splitlines()[0]}); delete it and place "
            f"{weights.url} there"
        ) from error


class ImageNetInput(nn.Module):
    """Dataset-normalised batches -> the input the ImageNet weights expect: RGB, ``size`` pixels,
    standardised with ImageNet's mean and std (the weights' own transforms, applied on the device)."""

    def __init__(
        self,
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        size: int,
        imagenet_mean: Sequence[float],
        imagenet_std: Sequence[float],
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ConfigError(f"resnet18_transfer takes 1- or 3-channel images, not {in_channels}")
        self.size = size

        def column(values: Sequence[float]) -> torch.Tensor:
            return torch.tensor([float(v) for v in values]).view(1, -1, 1, 1)

        self.register_buffer("mean", column(mean), persistent=False)
        self.register_buffer("std", column(std), persistent=False)
        self.register_buffer("imagenet_mean", column(imagenet_mean), persistent=False)
        self.register_buffer("imagenet_std", column(imagenet_std), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = images * self.std + self.mean  # back to [0, 1]
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)  # grey -> RGB, as the ImageNet convs expect
        if images.shape[-2:] != (self.size, self.size):
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True)
        return (images - self.imagenet_mean) / self.imagenet_std


class TransferResNet18(nn.Module):
    """ResNet-18 pretrained on ImageNet, its 1000-class fc replaced by a head for ``num_classes``.

    ``freeze_backbone=True`` trains the head alone: the backbone's parameters get no gradient and its
    BatchNorm statistics stay those of ImageNet. ``False`` fine-tunes everything, the backbone at
    ``backbone_lr_scale`` times the optimizer's LR (see :meth:`param_groups`). Images are resized to
    ``input_size`` (null: the weights' 224) and standardised as the weights expect, inside the model.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        weights: str | None = "IMAGENET1K_V1",
        freeze_backbone: bool = True,
        backbone_lr_scale: float = 0.1,
        input_size: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        pretrained = imagenet_weights(weights) if weights else None
        # the input of the weights' recipe, also for weights=null (same architecture, same input)
        preset = (pretrained or ResNet18_Weights.DEFAULT).transforms()
        backbone = resnet18(weights=None)
        if pretrained is not None:
            backbone.load_state_dict(load_state_dict(pretrained))
        elif freeze_backbone:
            log.warning(
                "model.weights=null with model.freeze_backbone=true: only the head of a random net trains"
            )
        self.input = ImageNetInput(
            in_channels, mean, std, input_size or preset.crop_size[0], preset.mean, preset.std
        )
        stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        self.stages = nn.Sequential(stem, backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)
        self.head = ClassifierHead(backbone.fc.in_features, num_classes, dropout)
        self.freeze_backbone = freeze_backbone
        self.backbone_lr_scale = backbone_lr_scale
        self.stages.requires_grad_(not freeze_backbone)

    @property
    def keeps_modules_in_eval(self) -> bool:
        """Its frozen backbone stays in eval mode while the head trains (see ``train``)."""
        return self.freeze_backbone

    def train(self, mode: bool = True) -> TransferResNet18:
        super().train(mode)
        if self.freeze_backbone:
            self.stages.eval()  # a frozen backbone keeps its ImageNet BatchNorm statistics
        return self

    def param_groups(self) -> list[dict[str, Any]]:
        """The backbone at a lower LR than the new head (``lr_scale`` multiplies the optimizer's LR)."""
        return [
            {"params": list(self.stages.parameters()), "lr_scale": self.backbone_lr_scale},
            {"params": list(self.head.parameters())},
        ]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.input(images)))
