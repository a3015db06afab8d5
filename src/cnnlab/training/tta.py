"""Test-time augmentation: average the class probabilities of a few transformed copies of each image.

``flip``: the image and its mirror (for models trained with horizontal flips; never for digits).
``translate``: the image and its copies shifted by ``SHIFT`` pixels up, down, left and right (reflect
padding, as the training crops pad). ``flip_translate``: both, 10 views.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError

TTA_MODES = ("flip", "translate", "flip_translate")
SHIFT = 2


def check_mode(mode: str | None) -> str | None:
    if mode not in (None, *TTA_MODES):
        raise ConfigError(f"tta={mode!r} is unknown; use one of {', '.join(TTA_MODES)} or null")
    return mode


def shift(images: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Translate a batch by (rows, cols) pixels, filling the border by reflection."""
    pad = max(abs(rows), abs(cols))
    if pad == 0:
        return images
    height, width = images.shape[-2:]
    padded = F.pad(images, (pad,) * 4, mode="reflect")
    top, left = pad - rows, pad - cols
    return padded[..., top : top + height, left : left + width]


def views(images: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The batch as the model sees it under ``mode``, the untouched batch first."""
    flipped = [images, images.flip(-1)] if "flip" in mode else [images]
    if "translate" not in mode:
        return flipped
    offsets = [(SHIFT, 0), (-SHIFT, 0), (0, SHIFT), (0, -SHIFT)]
    return flipped + [shift(view, rows, cols) for view in flipped for rows, cols in offsets]


def tta_probabilities(
    model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, mode: str
) -> torch.Tensor:
    """Mean softmax over the views, computed in one forward pass (the model must be in eval mode)."""
    batch = views(images, mode)
    probabilities = model(torch.cat(batch)).softmax(dim=-1)
    return probabilities.view(len(batch), len(images), -1).mean(dim=0)
