"""What ``trainer.precision=auto`` means: for a run, and for evaluating its checkpoint again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def auto_precision(on_gpu: bool) -> str:
    """``auto``: bf16 autocast on a GPU that supports it, else full fp32."""
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


def resolve_precision(trainer_cfg: Mapping[str, Any]) -> str | int:
    """The run's precision; ``auto`` as above, on the GPU when the accelerator allows one and there is one."""
    precision = trainer_cfg.get("precision", "32-true")
    if precision != "auto":
        return precision
    gpu_allowed = trainer_cfg.get("accelerator", "auto") in ("auto", "gpu", "cuda")
    return auto_precision(gpu_allowed and torch.cuda.is_available())
