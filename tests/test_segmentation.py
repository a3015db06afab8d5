"""The U-Net's loss: soft Dice on the object classes beside the per-pixel cross-entropy."""

from __future__ import annotations

import pytest
import torch

from cnnlab.training.segmentation import soft_dice_loss


def _masks() -> torch.Tensor:
    masks = torch.zeros(2, 16, 16, dtype=torch.long)
    masks[0, 2:6, 3:5] = 4  # a thin stroke: a few percent of the pixels, as on the digit canvases
    masks[1, 9:12, 1:4] = 2
    return masks


def test_dice_is_zero_for_a_perfect_mask_and_counts_each_missed_class() -> None:
    masks = _masks()
    perfect = 20 * torch.nn.functional.one_hot(masks, 11).permute(0, 3, 1, 2).float()
    background = torch.zeros(2, 11, 16, 16)
    background[:, 0] = 20
    assert soft_dice_loss(perfect, masks).item() < 0.01
    # two of the ten object classes are present (8 and 9 pixels) and fully missed, each costing
    # 1 - smooth / (pixels + smooth); the eight absent classes cost nothing
    missed = (1 - 1 / 9) + (1 - 1 / 10)
    assert soft_dice_loss(background, masks).item() == pytest.approx(missed / 10, abs=1e-3)


def test_dice_pulls_the_ink_pixels_away_from_the_background() -> None:
    masks = _masks()
    logits = torch.zeros(2, 11, 16, 16, requires_grad=True)
    soft_dice_loss(logits, masks).backward()
    ink = masks > 0
    true_class = logits.grad.gather(1, masks.unsqueeze(1)).squeeze(1)
    # descending the loss raises the true class's logit on the ink and the background's is not raised there
    assert (true_class[ink] < 0).all()
    assert (logits.grad[:, 0][ink] >= 0).all()
