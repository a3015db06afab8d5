"""The run directory's record (metrics.json): written once, atomically, at the end of a run."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import cnnlab

if TYPE_CHECKING:
    import torch

RUN_RECORD = "metrics.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        json.dump(data, file, indent=2, sort_keys=False)
        file.write("\n")
    os.replace(file.name, path)


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """The record of a finished run."""
    with (Path(run_dir) / RUN_RECORD).open() as file:
        return json.load(file)


def hydra_choice(group: str, fallback: str) -> str:
    """The option chosen for a config group (e.g. model=smallcnn), when running under Hydra."""
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get(group, fallback))
    return fallback


def task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def debug_mode(cfg: DictConfig) -> str | None:
    """How a debug run was asked for (``debug=fdr``, ``trainer.fast_dev_run``, ...); None for a real run.

    Its figures come from a batch or a few: the record says ``status: debug`` so that they never pass
    as results.
    """
    choice = HydraConfig.get().runtime.choices.get("debug") if HydraConfig.initialized() else None
    if choice not in (None, "null", "None"):
        return f"debug={choice}"
    trainer = cfg.get("trainer") or {}
    for flag in ("fast_dev_run", "overfit_batches"):
        if trainer.get(flag):
            return f"trainer.{flag}={trainer.get(flag)}"
    return None


def common_record(cfg: DictConfig, datamodule: Any, started_at: datetime) -> dict[str, Any]:
    """The record fields every run has, neural or classical; each model path adds its own."""
    import lightning as L  # here, not at the top: `python -m results` reads records without torch
    import torch

    debug = debug_mode(cfg)
    return {
        "status": "debug" if debug else "completed",
        "debug": debug,
        "model": hydra_choice("model", str(cfg.model.get("_target_", "?")).rsplit(".", 1)[-1].lower()),
        "dataset": datamodule.name,
        "seed": cfg.seed,
        "overrides": task_overrides(),
        "run_dir": str(cfg.paths.output_dir),
        "started_at": started_at.isoformat(timespec="seconds"),
        "versions": {"cnnlab": cnnlab.__version__, "torch": torch.__version__, "lightning": L.__version__},
    }


def summary_line(record: dict[str, Any]) -> str:
    """The one line printed at the end of a run."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    if record.get("status") == "debug":
        debug_run = f"debug run ({record.get('debug')}), not a result: "
    else:
        debug_run = ""
    epochs = f"{record['epochs']} epochs " if record.get("epochs") is not None else ""
    resumed = record.get("train_time_resumed_s")
    after_resume = f" ({resumed:.1f} s after the resume)" if resumed is not None else ""
    return (
        f"{debug_run}{record['model']} on {record['dataset']}: test acc {fmt(record.get('test_acc'))}, "
        f"macro-F1 {fmt(record.get('test_f1_macro'))}, best val acc {fmt(record.get('best_val_acc'))}, "
        f"{record.get('params', 0):,} params, {epochs}in {record.get('train_time_s', 0):.1f} s{after_resume} "
        f"on {record.get('device', '?')} -> {record['run_dir']}"
    )


def flatten_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"optimizer.lr": 0.1, ...}; the ``hydra`` node is left out."""
    if isinstance(config, dict):
        flat: dict[str, Any] = {}
        for key, value in config.items():
            if key != "hydra":
                flat.update(flatten_config(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): config}


def hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The flat config as TensorBoard's HParams wants it: scalars, with lists and None as strings."""
    return {
        key: value if isinstance(value, (int, float, str, bool)) else str(value)
        for key, value in flatten_config(config).items()
    }


def device_name(device: torch.device) -> str:
    """How run records and bench.json name the hardware: the GPU's model, or the CPU's core count."""
    import torch  # here: `python -m results` reads records without torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({os.cpu_count()} cores)" if device.type == "cpu" else device.type
