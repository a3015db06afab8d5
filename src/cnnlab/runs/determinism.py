"""Reproducible runs: the random generators' states (for mid-epoch checkpoints) and deterministic kernels.

The per-epoch reseeding, which makes a resumed run replay the epoch it lost, is in
``cnnlab.callbacks.epoch_seed``."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, open_dict


def rng_states() -> dict[str, Any]:
    """torch's (CPU and CUDA), numpy's and Python's generator states, as types a weights-only load accepts."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            kind,
            torch.from_numpy(keys.astype(np.int64)),
            int(position),
            int(has_gauss),
            float(cached_gaussian),
        ],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(states["python"])


def configure_determinism(cfg: DictConfig) -> None:
    """``deterministic=true`` (or ``warn``): torch's deterministic algorithms through the Trainer."""
    mode: Any = cfg.get("deterministic", False)
    if not mode:
        return
    with open_dict(cfg):
        cfg.trainer.deterministic = mode
        if cfg.trainer.get("benchmark"):
            cfg.trainer.benchmark = False  # cuDNN autotuning picks kernels by timing: not reproducible
