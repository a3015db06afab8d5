"""The configured torchvision v2 augmentations as operations on whole uint8 batches.

Every op takes ``(images, generator)`` and draws each image's own parameters from ``generator`` in
a few tensor calls, so one batch costs a handful of kernels instead of a Python loop over images,
and a loader that checkpoints its generator replays the draws exactly. The semantics are
torchvision's: the same parameter distributions, and for the affine the same sampling grid as
``v2.functional.affine``, so a batch is what the per-image transforms would have made of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode, v2

log = logging.getLogger(__name__)

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def random_crop(
    images: torch.Tensor,
    padding: int,
    generator: torch.Generator,
    padding_mode: str = "reflect",
    fill: float = 0.0,
) -> torch.Tensor:
    """Per-image random crop of the padded batch back to its size (v2.RandomCrop semantics)."""
    if padding == 0:
        return images
    n, _, height, width = images.shape
    if padding_mode == "constant":
        padded = F.pad(images, (padding,) * 4, mode="constant", value=fill)
    else:
        padded = F.pad(images, (padding,) * 4, mode=padding_mode)
    device = images.device
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    rows = (top[:, None] + torch.arange(height, device=device))[:, :, None]
    cols = (left[:, None] + torch.arange(width, device=device))[:, None, :]
    batch = torch.arange(n, device=device)[:, None, None]
    # advanced indexing gathers every image's own window at once: (n, H, W, C)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability ``p`` (v2.RandomHorizontalFlip semantics)."""
    flip = torch.rand(len(images), generator=generator, device=images.device) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def _uniform(
    n: int, low: float, high: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    # float32, like torchvision's torch.empty(1).uniform_(low, high)
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def draw_affine_params(
    transform: v2.RandomAffine,
    n: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """``n`` draws of ``transform``'s parameters, distributed as its ``make_params``.

    angle (n,) in degrees, translate (n, 2) in whole pixels, scale (n,), shear (n, 2) in degrees.
    """
    angle = _uniform(n, *transform.degrees, generator, device)
    translate = torch.zeros(n, 2, device=device)
    if transform.translate is not None:
        max_dx, max_dy = float(transform.translate[0] * width), float(transform.translate[1] * height)
        # torchvision rounds each shift to whole pixels (Python's round: half to even, as torch.round)
        translate[:, 0] = _uniform(n, -max_dx, max_dx, generator, device).round()
        translate[:, 1] = _uniform(n, -max_dy, max_dy, generator, device).round()
    scale = torch.ones(n, device=device)
    if transform.scale is not None:
        scale = _uniform(n, *transform.scale, generator, device)
    shear = torch.zeros(n, 2, device=device)
    if transform.shear is not None:
        shear[:, 0] = _uniform(n, transform.shear[0], transform.shear[1], generator, device)
        if len(transform.shear) == 4:
            shear[:, 1] = _uniform(n, transform.shear[2], transform.shear[3], generator, device)
    return {"angle": angle, "translate": translate, "scale": scale, "shear": shear}


def inverse_affine_matrices(
    angle: torch.Tensor,
    translate: torch.Tensor,
    scale: torch.Tensor,
    shear: torch.Tensor,
    center: tuple[float, float] = (0.0, 0.0),
) -> torch.Tensor:
    """(n, 2, 3) output-to-input pixel maps: torchvision's ``_get_inverse_affine_matrix``, batched.

    ``center`` is relative to the image centre, as torchvision passes it; float64 like its Python maths.
    """
    angle, scale = angle.double(), scale.double()
    translate, shear = translate.double(), shear.double()
    rot, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear[:, 0]), torch.deg2rad(shear[:, 1])
    cx, cy = center
    tx, ty = translate[:, 0], translate[:, 1]
    # rotation-shear without the scale; its determinant is 1, so its inverse is the adjugate
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m0, m1, m3, m4 = d / scale, -b / scale, -c / scale, a / scale
    m2 = m0 * (-cx - tx) + m1 * (-cy - ty) + cx
    m5 = m3 * (-cx - tx) + m4 * (-cy - ty) + cy
    return torch.stack([m0, m1, m2, m3, m4, m5], dim=1).view(-1, 2, 3)


def affine_grid(matrices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, H, W, 2) ``grid_sample`` grid of the pixel maps, computed as torchvision's ``_affine_grid``."""
    device = matrices.device
    theta = matrices.float()
    base = torch.empty(1, height, width, 3, device=device)
    base[..., 0].copy_(torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, steps=width, device=device))
    base[..., 1].copy_(
        torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, steps=height, device=device).unsqueeze_(-1)
    )
    base[..., 2].fill_(1)
    rescaled = theta.transpose(1, 2).div(torch.tensor([0.5 * width, 0.5 * height], device=device))
    n = len(theta)
    return base.view(1, height * width, 3).expand(n, -1, -1).bmm(rescaled).view(n, height, width, 2)


def warp_affine(
    images: torch.Tensor,
    matrices: torch.Tensor,
    interpolation: str = "nearest",
    fill: float | Sequence[float] | None = 0.0,
) -> torch.Tensor:
    """Each image of a batch through its own inverse pixel map (``v2.functional.affine``'s resampling)."""
    n, channels, height, width = images.shape
    grid = affine_grid(matrices, height, width)
    floats = images if images.is_floating_point() else images.float()
    fill_values = None if fill is None else torch.as_tensor(fill, dtype=floats.dtype, device=images.device)
    # nearest sampling with a zero fill is plain zero padding; otherwise torchvision resamples a
    # validity mask with the image and blends the fill in where the source lay outside
    blend = fill_values is not None and (interpolation != "nearest" or bool(fill_values.any()))
    if blend:
        floats = torch.cat([floats, floats.new_ones(n, 1, height, width)], dim=1)
    out = F.grid_sample(floats, grid, mode=interpolation, padding_mode="zeros", align_corners=False)
    if blend:
        out, mask = out[:, :channels], out[:, channels:]
        fill_image = fill_values.reshape(1, -1, 1, 1).expand_as(out)
        if interpolation == "nearest":
            out = torch.where(mask < 0.5, fill_image, out)
        else:
            out = (out - fill_image) * mask + fill_image
    return out if images.is_floating_point() else out.round_().to(images.dtype)


def random_affine(
    images: torch.Tensor, transform: v2.RandomAffine, generator: torch.Generator
) -> torch.Tensor:
    """``transform`` (a v2.RandomAffine) applied to every image with its own parameters."""
    n, _, height, width = images.shape
    params = draw_affine_params(transform, n, height, width, generator, images.device)
    center = (0.0, 0.0)
    if transform.center is not None:
        center = (transform.center[0] - width * 0.5, transform.center[1] - height * 0.5)
    matrices = inverse_affine_matrices(**params, center=center)
    return warp_affine(images, matrices, _interpolation(transform), _affine_fill(transform))


def _interpolation(transform: v2.RandomAffine) -> str:
    mode = transform.interpolation
    if isinstance(mode, InterpolationMode):
        return mode.value
    return InterpolationMode(mode).value if isinstance(mode, str) else str(mode)


def _affine_fill(transform: v2.RandomAffine) -> float | list[float] | None:
    fill = transform.fill
    return [float(v) for v in fill] if isinstance(fill, (list, tuple)) else fill


def _batched(transform: Callable) -> BatchTransform | None:
    """The whole-batch version of one v2 transform, or None when it has none."""
    if isinstance(transform, v2.RandomCrop):
        padding = transform.padding
        if padding is None or len(set(padding)) != 1 or transform.pad_if_needed:
            return None
        fill = transform.fill
        if transform.padding_mode == "constant" and not isinstance(fill, (int, float)):
            return None  # per-channel or per-type fills: torchvision's own per-image pad handles them

        def crop(images, generator, padding=padding[0], mode=transform.padding_mode, fill=fill):
            return random_crop(images, padding, generator, mode, fill)

        return crop
    if isinstance(transform, v2.RandomHorizontalFlip):

        def flip(images, generator, p=transform.p):
            return random_flip(images, p, generator)

        return flip
    if isinstance(transform, v2.RandomAffine):
        try:
            mode = _interpolation(transform)
        except ValueError:
            return None
        fill = transform.fill
        if mode not in ("nearest", "bilinear") or isinstance(fill, dict):
            return None

        def affine(images, generator, transform=transform):
            return random_affine(images, transform, generator)

        return affine
    return None


def unbatchable(transforms: Sequence[Callable]) -> list[str]:
    """The names of the transforms that have no whole-batch version (empty: everything batches)."""
    return [type(transform).__name__ for transform in transforms if _batched(transform) is None]


def _per_sample(transform: Callable) -> BatchTransform:
    def apply(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # torchvision draws from the global RNG: seed it from the loader's generator, so these draws
        # too replay from a checkpoint and leave the rest of the run's random stream alone
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([transform(image) for image in images])

    return apply


def batch_transforms(transforms: Sequence[Callable]) -> list[BatchTransform]:
    """The configured per-sample v2 augmentations as whole-batch operations.

    RandomCrop, RandomHorizontalFlip and RandomAffine run batched; any other transform (RandAugment,
    AutoAugment, TrivialAugmentWide...) still runs, image by image, so the semantics never change,
    only the speed.
    """
    ops: list[BatchTransform] = []
    for transform in transforms:
        op = _batched(transform)
        if op is None:
            log.info("%s has no batched version; applying it image by image", type(transform).__name__)
            op = _per_sample(transform)
        ops.append(op)
    return ops


def apply_all(
    images: torch.Tensor, ops: Sequence[BatchTransform], generator: torch.Generator
) -> torch.Tensor:
    """``images`` through every op in turn."""
    for op in ops:
        images = op(images, generator)
    return images
