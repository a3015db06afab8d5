"""Augmentations of whole normalised training batches: random erasing, then MixUp or CutMix.

They run after normalisation, on the training device, for every loader: random erasing fills its
rectangle with N(0, 1) noise, i.e. noise at the scale of the standardised data (Zhong et al., 2020);
MixUp (Zhang et al., 2018) and CutMix (Yun et al., 2019) blend pairs of images and turn the labels
into class probabilities, which the loss takes as they are.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from cnnlab.errors import ConfigError


class BatchAugment:
    """``(images, labels) -> (images, targets)``; targets are probabilities when mixing is on.

    With both alphas set, each batch is mixed by one of MixUp / CutMix, chosen at random.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        random_erasing: float = 0.0,
    ) -> None:
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if value < 0:
                raise ConfigError(f"data.{name}={value} is invalid; use 0 (off) or a positive Beta alpha")
        if not 0 <= random_erasing <= 1:
            raise ConfigError(f"data.random_erasing={random_erasing} is invalid; use a probability in [0, 1]")
        mixers = []
        if mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mix = v2.RandomChoice(mixers) if len(mixers) > 1 else (mixers[0] if mixers else None)
        self.erasing_p = random_erasing
        self.erase = v2.RandomErasing(p=1.0, value="random")

    @property
    def enabled(self) -> bool:
        return self.mix is not None or self.erasing_p > 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.erasing_p > 0:
            chosen = torch.nonzero(torch.rand(len(images)) < self.erasing_p).flatten().tolist()
            if chosen:
                images = images.clone()
                for index in chosen:  # each image its own rectangle
                    images[index] = self.erase(images[index])
        if self.mix is not None:
            images, labels = self.mix(images, labels)
        return images, labels
