"""Checks of a run's config that need neither torch nor Lightning: ``python -m train`` makes them as soon
as Hydra has composed the config, so that a wrong data root, learning rate or accelerator stops the run
before the heavy imports (docs/performance.md#start-up-and-early-errors). The later stages call the
same functions."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnlab.data.image_folder import FOLDER_DATAMODULE, check_folder
from cnnlab.data.layout import check_present
from cnnlab.errors import ConfigError

# the names Lightning's Trainer takes for ``accelerator`` (its AcceleratorRegistry, plus gpu and auto)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
GPU_NAMES = ("gpu", "cuda")


def check_before_imports(cfg: DictConfig) -> None:
    """Raise the DataError / ConfigError the run would stop with later, for what can be checked now."""
    from cnnlab.runs.resume import run_state

    # a finished run that resume=true skips reads no data (and may have been trained on data moved since)
    if run_state(Path(cfg.paths.output_dir)) != "completed":
        check_data_present(cfg.get("data"))
    check_learning_rate(cfg.get("optimizer"))
    check_accelerator(cfg.get("trainer", {}).get("accelerator", "auto"))


def check_data_present(data: DictConfig | None) -> None:
    """The dataset's files are under ``data.root`` (``data.source`` for the canvases), unless
    ``data.download`` fetches them."""
    if data and data.get("_target_") == FOLDER_DATAMODULE:  # data=folder: the user's folder of images
        check_folder(data.get("path"))
        return
    if not data or data.get("download") or data.get("root") is None:
        return
    check_present(str(data.get("source") or data.get("name")), data.root)


def check_learning_rate(optimizer: DictConfig | None) -> None:
    """``optimizer.lr``, when the optimizer has one, is a positive number."""
    lr: Any = optimizer.get("lr") if optimizer else None
    if lr is None:
        return
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise ConfigError(
            f"optimizer.lr={lr!r} is not a number; fix the optimizer.* overrides, e.g. optimizer.lr=0.05"
        )
    if not lr > 0:  # also NaN
        raise ConfigError(
            f"optimizer.lr={lr} is invalid; use a positive learning rate, e.g. optimizer.lr=0.05"
        )


def check_accelerator(accelerator: object, available: Collection[str] | None = None) -> None:
    """``trainer.accelerator`` is a name Lightning knows and runs on this machine. ``available``: the
    names that run here, as Lightning sees them; by default only a GPU is looked for (torch's device
    count, which Lightning uses too), and the others are left to Lightning."""
    if not isinstance(accelerator, str) or accelerator == "auto":
        return
    if accelerator not in ACCELERATORS:
        raise ConfigError(
            f"trainer.accelerator={accelerator} is not an accelerator; use one of {', '.join(ACCELERATORS)} "
            f"(auto: a GPU if there is one, else the CPU)"
        )
    if available is None:
        if accelerator not in GPU_NAMES:
            return
        available = ["cpu", *(GPU_NAMES if _gpu_count() else ())]
    if accelerator not in available:
        device = "GPU" if accelerator in GPU_NAMES else f"{accelerator.upper()} device"
        raise ConfigError(
            f"trainer.accelerator={accelerator} but this machine has no usable {device}; use trainer=cpu, "
            f"or trainer.accelerator=auto (a GPU if there is one)"
        )


def _gpu_count() -> int:
    import torch  # seconds (docs/performance.md#start-up-and-early-errors), only for a run asking for a GPU

    return torch.cuda.device_count()  # by NVML where it can: no CUDA context, forking stays safe
