"""Batched inference on uint8 images, normalised exactly as in training."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.training.precision import auto_precision


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"device={name!r} is not a torch device; use auto, cpu or cuda") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA GPU is available; use device=auto or cpu")
    return device


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """The autocast of a Lightning ``precision`` string on ``device`` (none for full precision)."""
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def trained_precision(trainer_config: Mapping[str, Any], device: torch.device) -> str:
    """The precision a run's test loop used on ``device`` (``auto``: bf16 on a bf16 GPU), so that
    evaluating its checkpoint again reproduces the recorded test figures."""
    precision = str(trainer_config.get("precision", "32-true"))
    return auto_precision(device.type == "cuda") if precision == "auto" else precision


def normalized_batches(
    net: nn.Module,
    images: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int = 256,
) -> Iterator[torch.Tensor]:
    """``images`` (N, C, H, W) uint8 in ``batch_size`` chunks, normalised on ``device``, with ``net``
    moved there in eval mode; callers run it under ``torch.inference_mode``."""
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} is invalid; use a positive batch size")
    net.eval().to(device)
    for start in range(0, len(images), batch_size):
        yield normalize(images[start : start + batch_size].to(device))


@torch.inference_mode()
def predict_logits(
    net: nn.Module,
    images: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int = 256,
    precision: str = "32-true",
) -> torch.Tensor:
    """Logits (on the CPU, float32) of ``images`` (N, C, H, W) uint8, in ``batch_size`` chunks, under
    ``precision``'s autocast."""
    batches = normalized_batches(net, images, normalize, device, batch_size)
    with autocast(device, precision):
        chunks = [net(batch).float().cpu() for batch in batches]
    return torch.cat(chunks) if chunks else torch.empty(0)
