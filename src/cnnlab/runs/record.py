"""What goes into a run's record besides its fit's figures: the fields every run has, its HParams, the
checkpoint a run directory stands for. The record's type, reader and writer are in ``runs/run_record.py``."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import cnnlab
from cnnlab.errors import CheckpointError
from cnnlab.runs.identity import defines_the_run
from cnnlab.runs.run_record import (  # noqa: F401  (the record's names, where callers have found them)
    RUN_RECORD,
    read_run_record,
    write_json_atomic,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# TensorBoard's HParams tab: the config groups that tell runs apart, and the settings every comparison
# reads (column -> config key), before the run's own overrides
HPARAM_GROUPS = ("model", "data", "optimizer", "scheduler", "recipe", "augment", "experiment")
HPARAM_SETTINGS = {"lr": "optimizer.lr", "batch_size": "data.batch_size", "epochs": "trainer.max_epochs"}
# the HParams tab's metric columns (record field -> tag)
HPARAM_METRICS = {
    "best_val_acc": "hparams/best_val_acc",
    "test_acc": "hparams/test_acc",
    "test_f1_macro": "hparams/test_f1_macro",
}


def hydra_choice(group: str, fallback: str) -> str:
    """The option chosen for a config group (e.g. model=smallcnn), when running under Hydra."""
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get(group, fallback))
    return fallback


def task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def timestamp(moment: datetime) -> str:
    """How records write times: ISO 8601 in UTC, to the millisecond (jobs of a sweep can be ordered)."""
    return moment.isoformat(timespec="milliseconds")


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
        # class names in label order, image size, channels, normalisation (and a folder's path and split)
        "data": datamodule.describe() if hasattr(datamodule, "describe") else None,
        "seed": cfg.seed,
        "folds": getattr(datamodule, "folds", None),  # k-fold cross-validation: this run validates on
        "fold": getattr(datamodule, "fold", None),  # fold `fold` of `folds` (both null without CV)
        "overrides": task_overrides(),
        "run_dir": str(cfg.paths.output_dir),
        "started_at": timestamp(started_at),
        # the devices this run was given (hydra/launcher=gpus gives each job its own); null: not set
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "versions": {"cnnlab": cnnlab.__version__, "torch": torch.__version__, "lightning": L.__version__},
        **git_state(),
    }


def git_state(source: Path | None = None) -> dict[str, Any]:
    """``git_commit`` of the code that ran and ``git_dirty`` (tracked files changed since); both None
    outside a git checkout or without git."""
    source = source or Path(cnnlab.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=source, capture_output=True, text=True, timeout=5, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    changes = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if changes is None else bool(changes)}


def flatten_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"optimizer.lr": 0.1, ...}; the ``hydra`` node is left out."""
    if isinstance(config, dict):
        flat: dict[str, Any] = {}
        for key, value in config.items():
            if key != "hydra":
                flat.update(flatten_config(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): config}


def current_choices() -> dict[str, str | None]:
    """The config-group choices of the running Hydra job (e.g. {"model": "smallcnn", "recipe": None})."""
    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def saved_choices(run_dir: Path | None) -> dict[str, str | None]:
    """The config-group choices a finished run saved in ``.hydra/hydra.yaml``; {} when there is none."""
    path = Path(run_dir) / ".hydra" / "hydra.yaml" if run_dir else None
    if path is None or not path.is_file():
        return {}
    choices = OmegaConf.select(OmegaConf.load(path), "hydra.runtime.choices", default=None)
    return dict(OmegaConf.to_container(choices)) if choices is not None else {}


def hparam_value(value: Any) -> bool | int | float | str:
    """HParams takes bool / int / float / str only; None and lists become strings."""
    if value is None:
        return "none"
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def hparams(
    config: dict[str, Any], choices: Mapping[str, str | None] | None = None, overrides: Sequence[str] = ()
) -> dict[str, bool | int | float | str]:
    """What tells runs apart, for TensorBoard's HParams tab (the full config is in .hydra/config.yaml).

    The group choices, the learning rate, batch size, epochs and seed, then every task override
    (command line and sweep) with its resolved value; overrides that do not define the run
    (``cnnlab.runs.identity``: where it read or wrote, how it logged or was continued) are left out.
    """
    flat = flatten_config(config)
    choices = choices or {}
    fallback = {
        "model": str(flat.get("model._target_", "?")).rsplit(".", 1)[-1].lower(),
        "data": flat.get("data.name"),
    }
    values: dict[str, Any] = {group: choices.get(group, fallback.get(group)) for group in HPARAM_GROUPS}
    values.update({name: flat.get(key) for name, key in HPARAM_SETTINGS.items()})
    values["seed"] = flat.get("seed")
    shown = {*values, *HPARAM_SETTINGS.values()}
    for override in overrides:
        key, _, raw = override.lstrip("+~").partition("=")
        if key in shown or not defines_the_run(key):
            continue
        values[key] = choices[key] if key in choices else flat.get(key, raw)
    return {key: hparam_value(value) for key, value in values.items()}


def hparam_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The HParams tab's metric columns: best validation accuracy, test accuracy and macro-F1."""
    return {tag: float(record[key]) for key, tag in HPARAM_METRICS.items() if record.get(key) is not None}


def device_name(device: torch.device) -> str:
    """How run records and bench.json name the hardware: the GPU's model, or the CPU's core count."""
    import torch  # here: `python -m results` reads records without torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({os.cpu_count()} cores)" if device.type == "cpu" else device.type


def resolve_checkpoint_path(path: str | Path | None) -> Path:
    """The checkpoint file; a run directory stands for its best checkpoint (from its metrics.json), or,
    where its record names none that exists (a run killed, failed or preempted), the checkpoint on disk."""
    if path is None or str(path) == "":
        raise CheckpointError("no checkpoint given: pass ckpt_path=outputs/<run>/checkpoints/<file>.ckpt")
    path = Path(path).expanduser()
    if path.is_dir():
        path = _checkpoint_of_run(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; pass ckpt_path=<run>/checkpoints/<file>.ckpt")
    return path


def _checkpoint_of_run(run_dir: Path) -> Path:
    """The best checkpoint on record, else the best one on validation that is on disk, else last.ckpt."""
    record = read_run_record(run_dir) if (run_dir / RUN_RECORD).is_file() else None
    best = record.get("best_checkpoint") if record else None
    if best and (run_dir / best).is_file():
        return run_dir / best
    folder = run_dir / "checkpoints"
    # model_checkpoint keeps the best epoch's file (save_top_k: 1); a larger top-k keeps several
    epochs = sorted(folder.glob("epoch_*.ckpt"))
    if epochs:
        chosen, which = epochs[-1], "the best on validation" if len(epochs) == 1 else "the newest epoch's"
    elif (folder / "last.ckpt").is_file():
        chosen, which = folder / "last.ckpt", "the last one saved"
    elif record is None and not (run_dir / ".hydra").is_dir():
        raise CheckpointError(
            f"{run_dir} is a directory without a {RUN_RECORD}; pass a .ckpt file from its checkpoints/"
        )
    else:
        raise CheckpointError(
            f"the run in {run_dir} saved no checkpoint; train it again or pass a .ckpt file"
        )
    status = record.get("status", "unfinished") if record else "unfinished"
    log.info(
        "%s: the %s run's record names no best checkpoint; using %s, %s",
        run_dir,
        status,
        os.path.relpath(chosen, run_dir),
        which,
    )
    return chosen
