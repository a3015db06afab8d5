"""Image transforms: per-sample augmentation on uint8 images, normalisation on whole batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2


def augmentation(transforms: Sequence[Callable]) -> Callable | None:
    """Compose the configured train-time augmentations (they act on uint8 CHW images)."""
    return v2.Compose(list(transforms)) if transforms else None


class Normalize:
    """uint8 batch -> float32, scaled to [0, 1] and standardised per channel.

    Applied to whole batches on the training device, so the loaders move uint8 (4x less data) and
    every path (DataLoader, evaluation, prediction) shares one definition of the input scale.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = v2.functional.to_dtype(images, torch.float32, scale=True)
        return v2.functional.normalize(images, self.mean, self.std)

    def invert(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float images back to [0, 1], for display."""
        mean = torch.tensor(self.mean, device=images.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(-1, 1, 1)
        return (images * std + mean).clamp(0, 1)


class ScaledRandomCrop(v2.RandomCrop):
    """CIFAR-10's random crop at any image size: pads by ``padding_fraction`` of the size (4 pixels at 32,
    as data=cifar10), reflecting the border, and crops back. A RandomCrop, so it runs on whole batches."""

    def __init__(self, size: int, padding_fraction: float = 0.125, padding_mode: str = "reflect") -> None:
        super().__init__(size, padding=max(1, round(size * padding_fraction)), padding_mode=padding_mode)
