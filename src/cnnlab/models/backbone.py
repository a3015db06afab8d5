"""The classifiers' convolutional stages as a feature extractor for the detector and the U-Net."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.resnet import ResNet
from cnnlab.models.smallcnn import SmallCNN
from cnnlab.models.smallvgg import SmallVGG

# model.backbone -> the classifier whose stages it reuses (built with that classifier's defaults)
BACKBONES: dict[str, type[nn.Module]] = {"smallcnn": SmallCNN, "smallvgg": SmallVGG, "resnet18": ResNet}


class Backbone(nn.Module):
    """The ``stages`` of a classifier (its head dropped); ``forward`` returns every stage's output.

    The attribute keeps the classifier's name, so a classifier's ``stages.*`` weights load unchanged
    (``load_classifier_stages``). ``channels`` and ``strides`` describe each stage's output.
    """

    def __init__(self, name: str, in_channels: int) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ConfigError(f"model.backbone={name} is unknown; choose one of {', '.join(BACKBONES)}")
        self.name = name
        classifier = BACKBONES[name](in_channels=in_channels, num_classes=1)
        self.stages: nn.Sequential = classifier.stages
        self.in_channels = in_channels
        with torch.no_grad():  # one probe pass gives each stage's width and stride
            probe = torch.zeros(1, in_channels, 64, 64)
            was_training = self.training
            self.eval()
            features = self(probe)
            self.train(was_training)
        self.channels = [f.shape[1] for f in features]
        self.strides = [64 // f.shape[-1] for f in features]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features, x = [], images
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def load_classifier_stages(self, state: dict[str, torch.Tensor], source: str, in_channels: int) -> None:
        """Initialise from a classifier's ``stages.*`` weights (``source`` names it in errors)."""
        if in_channels != self.in_channels:
            raise ConfigError(
                f"model.backbone_ckpt={source} was trained on {in_channels}-channel images but these "
                f"canvases have {self.in_channels}; use a classifier trained on data with "
                f"{self.in_channels} channel(s) (e.g. data=mnist for mnist_canvas)"
            )
        stages = {k.removeprefix("stages."): v for k, v in state.items() if k.startswith("stages.")}
        try:
            self.stages.load_state_dict(stages)
        except RuntimeError as error:
            raise ConfigError(
                f"model.backbone_ckpt={source} does not fit model.backbone={self.name}: "
                f"{str(error).splitlines()[0]}; pass a classifier of the same architecture"
            ) from error
