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


def common_record(cfg: DictConfig, datamodule: Any, started_at: datetime) -> dict[str, Any]:
    """The record fields every run has, neural or classical; each model path adds its own."""
    import lightning as L  # here, not at the top: `python -m results` reads records without torch
    import torch

    return {
        "status": "completed",
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

    epochs = f"{record['epochs']} epochs " if record.get("epochs") is not None else ""
    if record.get("task") == "detect":
        figures = (
            f"test mAP {fmt(record.get('test_map'))}, mAP@0.5 {fmt(record.get('test_map_50'))}, "
            f"best val mAP@0.5 {fmt(record.get('best_val_map_50'))}"
        )
    elif record.get("task") == "segment":
        figures = (
            f"test mIoU {fmt(record.get('test_miou'))}, pixel acc {fmt(record.get('test_pixel_acc'))}, "
            f"best val mIoU {fmt(record.get('best_val_miou'))}"
        )
    else:
        figures = (
            f"test acc {fmt(record.get('test_acc'))}, macro-F1 {fmt(record.get('test_f1_macro'))}, "
            f"best val acc {fmt(record.get('best_val_acc'))}"
        )
    return (
        f"{record['model']} on {record['dataset']}: {figures}, "
        f"{record.get('params', 0):,} params, {epochs}in {record.get('train_time_s', 0):.1f} s "
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
