"""Publishing a finished run: its record, config, curves and evaluation, plus a weights-only checkpoint.

The archive keeps the run directory's layout minus bulk (no TensorBoard events, no training
checkpoints), so `python -m results`, `python -m evaluate` and `python -m predict` read it as they read
the run. Paths of the machine that trained it are rewritten: the run directory becomes the archive's
path and the data root becomes ``$CNNLAB_DATA``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.runs.run_record import RUN_RECORD, read_run_record, write_run_record

WEIGHTS_FILE = "model.ckpt"
NET = "net."  # the LightningModule keeps the network under .net; the rest is training state
DATA_ROOT = "${oc.env:CNNLAB_DATA,data}"
# what a reader of the archive needs; everything else in a run directory is bulk or rebuildable
KEPT = (
    ".hydra/config.yaml",
    ".hydra/overrides.yaml",
    "csv/metrics.csv",
    "eval/*.json",
    "eval/*.csv",
    "eval/*.txt",
    "eval/confusion_matrix.png",
    "eval/curves.png",
    "eval/errors.png",
    "model.joblib",  # the classical baseline's fitted model: a few KB
)
TEXT_SUFFIXES = (".json", ".csv", ".txt", ".yaml")


def _replace_paths(value: Any, replacements: list[tuple[str, str]]) -> Any:
    if isinstance(value, dict):
        return {key: _replace_paths(item, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_paths(item, replacements) for item in value]
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
    return value


def _path_replacements(
    run_dir: Path, dest: Path, data_root: str | None, data_root_as: str
) -> list[tuple[str, str]]:
    """Longest first, so the run directory wins over a data root that contains it."""
    pairs = [(str(run_dir.resolve()), str(dest)), (str(run_dir), str(dest))]
    if data_root and os.path.isabs(data_root):
        pairs.append((str(Path(data_root).resolve()), data_root_as))
        pairs.append((data_root, data_root_as))
    return sorted({pair for pair in pairs if pair[0]}, key=lambda pair: -len(pair[0]))


def weights_only_checkpoint(
    checkpoint: dict[str, Any], replacements: list[tuple[str, str]]
) -> dict[str, Any]:
    """The network's weights and the resolved run config of a loaded training checkpoint; no optimizer
    state."""
    return {
        "state_dict": {key: value for key, value in checkpoint["state_dict"].items() if key.startswith(NET)},
        "cnnlab_config": _replace_paths(checkpoint["cnnlab_config"], replacements),
        "epoch": checkpoint.get("epoch", 0),
        "global_step": checkpoint.get("global_step", 0),
        "pytorch-lightning_version": checkpoint.get("pytorch-lightning_version"),
    }


def archive_run(run_dir: Path | str, dest: Path | str, weights: bool = True, overwrite: bool = False) -> Path:
    """Copy a finished run into ``dest`` (e.g. docs/runs/<name>); returns ``dest``."""
    run_dir, dest = Path(run_dir), Path(dest)
    if not (run_dir / RUN_RECORD).is_file():
        raise ConfigError(f"{run_dir} holds no {RUN_RECORD}: archive a finished run directory")
    record = read_run_record(run_dir)
    if record.get("status") != "completed":
        status = record.get("status")
        raise ConfigError(f"{run_dir} did not finish (status {status!r}); archive a completed run")
    if dest.exists() and any(dest.iterdir()):
        if not overwrite:
            raise ConfigError(f"{dest} already holds files; choose another name or pass --overwrite")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)

    best = record.get("best_checkpoint")
    saved = None  # the best checkpoint, read once: its data root, then its weights
    config_data_root = None
    if best and (run_dir / best).is_file():
        import torch

        saved = torch.load(run_dir / best, map_location="cpu", weights_only=True)
        config_data_root = saved.get("cnnlab_config", {}).get("data", {}).get("root")
    replacements = _path_replacements(run_dir, dest, config_data_root, "$CNNLAB_DATA")

    for pattern in KEPT:
        for source in sorted(run_dir.glob(pattern)):
            target = dest / source.relative_to(run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.suffix in TEXT_SUFFIXES:
                target.write_text(_replace_paths(source.read_text(), replacements))
            else:
                shutil.copyfile(source, target)

    record = _replace_paths(record, replacements)
    record["archived_from"] = _portable(run_dir)
    record["best_checkpoint"] = None
    if weights and saved is not None:
        import torch

        in_config = _path_replacements(run_dir, dest, config_data_root, DATA_ROOT)
        torch.save(weights_only_checkpoint(saved, in_config), dest / WEIGHTS_FILE)
        record["best_checkpoint"] = WEIGHTS_FILE
    write_run_record(dest, record)
    return dest


def _portable(path: Path) -> str:
    """The run's path without this machine's part: relative to here, else from its outputs/ folder."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        parts = resolved.parts
        return str(Path(*parts[parts.index("outputs") :])) if "outputs" in parts else resolved.name


def archive_size(dest: Path) -> int:
    return sum(file.stat().st_size for file in dest.rglob("*") if file.is_file())
