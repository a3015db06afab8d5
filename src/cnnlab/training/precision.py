"""What ``trainer.precision=auto`` means: for a run, and for evaluating its checkpoint again."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

log = logging.getLogger(__name__)


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


def suggest_bf16_on_amx(trainer_cfg: Mapping[str, Any]) -> None:
    """Log that bf16 autocast would be much faster where ``auto`` chose fp32 on a CPU with AMX.

    Not the default there: an fp32 run's recorded accuracy must reproduce when it is evaluated again.
    """
    if trainer_cfg.get("precision") != "auto" or resolve_precision(trainer_cfg) != "32-true":
        return
    is_supported = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private API, absent in some builds
    if is_supported and is_supported():
        log.info(
            "trainer.precision=auto chose 32-true; this CPU has AMX, where trainer.precision=bf16-mixed "
            "trains convolutions faster (docs/performance.md#precision-bf16-on-a-cpu-with-amx)"
        )
