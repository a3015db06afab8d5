"""The rows of the results table: every run record under some directories, the runs of one configuration
(seeds, cross-validation folds) grouped and averaged, failed and unfinished runs kept apart."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cnnlab.errors import ConfigError
from cnnlab.results.statistics import mean_ci
from cnnlab.runs.identity import configuration_overrides
from cnnlab.runs.record import RUN_RECORD

# The metrics averaged over seeds, with their column titles.
METRICS = {"test_acc": "test top-1", "test_f1_macro": "macro-F1", "best_val_acc": "val acc"}
# shown only when some run of the table has them: TTA accuracy, epochs to the validation target
OPTIONAL_METRICS = {
    "test_tta_acc": "TTA top-1",
    "epochs_to_val_acc": "epochs to val target",
    # detection and segmentation runs (task detect / segment)
    "test_map": "test mAP",
    "test_map_50": "test mAP@0.5",
    "test_miou": "test mIoU",
}
GROUP_FIELDS = ("model", "dataset", "features", "config")
MEMBERS = "_runs"  # the row's Run objects, kept out of the written tables
PARTIAL = "†"  # marks a row with runs tested on part of the test set
DEFAULT_SORT = ("dataset", "model", "config")


@dataclass
class Run:
    """One run directory: its record when it finished, else why it has none."""

    path: Path
    status: str  # completed | failed | incomplete | debug
    record: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def config(self) -> str:
        """The run's overrides that define what it computed, in a canonical order."""
        return " ".join(
            sorted(o for o in self.defining_overrides if o.split("=", 1)[0] not in ("model", "data"))
        )

    @property
    def defining_overrides(self) -> list[str]:
        """The overrides of the run's configuration (``cnnlab.runs.identity``): runs equal in these are
        repeats of one configuration, whatever their seed or fold, and wherever and however they ran."""
        return configuration_overrides(self.record.get("overrides") or [])

    def field(self, name: str) -> Any:
        if name == "config":
            return self.config
        if name == "features":  # networks take the raw pixels and learn their features
            return self.record.get("features") or "pixels"
        return self.record.get(name)


def _overrides_of(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        return [str(o) for o in OmegaConf.to_container(OmegaConf.load(path))] if path.is_file() else []
    except Exception:  # a half-written overrides file must not hide the run
        return []


def find_runs(roots: Iterable[Path | str]) -> list[Run]:
    """Every run directory under ``roots``: finished (metrics.json), failed, or started but unfinished."""
    runs: dict[Path, Run] = {}
    for root in map(Path, roots):
        if not root.is_dir():
            raise ConfigError(
                f"{root} is not a directory; pass run or multirun directories (e.g. outputs/multirun/...)"
            )
        for record_path in sorted(root.rglob(RUN_RECORD)):
            run_dir = record_path.parent.resolve()
            try:
                record = json.loads(record_path.read_text())
            except (OSError, json.JSONDecodeError) as error:
                runs[run_dir] = Run(record_path.parent, "failed", error=f"unreadable {RUN_RECORD}: {error}")
                continue
            status = record.get("status", "completed")
            error = record.get("error") or (
                f"{record.get('debug')}: a debug run, not a result" if status == "debug" else None
            )
            runs[run_dir] = Run(record_path.parent, status, record, error)
        for hydra_dir in sorted(root.rglob(".hydra")):
            run_dir = hydra_dir.parent
            if hydra_dir.is_dir() and run_dir.resolve() not in runs:
                record = {"overrides": _overrides_of(run_dir)}
                runs[run_dir.resolve()] = Run(
                    run_dir, "incomplete", record, f"no {RUN_RECORD}: still running or killed"
                )
    if not runs:
        raise ConfigError(
            f"no runs under {', '.join(map(str, roots))}: no {RUN_RECORD} and no .hydra/ folder; pass the "
            f"run or multirun directories that `python -m train` wrote (outputs/...)"
        )
    return list(runs.values())


def _numbers(values: Iterable[Any]) -> list[float]:
    return [
        float(v)
        for v in values
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ]


def _distinct(values: Iterable[Any]) -> str:
    seen = sorted({str(v) for v in values if v is not None and v != ""}, key=lambda s: (len(s), s))
    return ", ".join(seen)


def summarize(runs: Sequence[Run], by: Sequence[str] = GROUP_FIELDS) -> list[dict[str, Any]]:
    """One row per group of finished runs with equal ``by`` fields: metrics as mean and std over the group."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.status == "completed":
            groups.setdefault(tuple(str(run.field(name) or "") for name in by), []).append(run)
    rows = []
    for members in groups.values():
        row: dict[str, Any] = {name: _distinct(run.field(name) for run in members) for name in GROUP_FIELDS}
        row["runs"] = len(members)
        row["seeds"] = _distinct(run.record.get("seed") for run in members)
        row["folds"] = _distinct(
            f"{run.record['fold']}/{run.record['folds']}" for run in members if run.record.get("folds")
        )
        for metric in (*METRICS, *OPTIONAL_METRICS):
            values = _numbers(run.record.get(metric) for run in members)
            row[f"{metric}_mean"] = statistics.fmean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
            row[f"{metric}_runs"] = len(values)
            if metric in METRICS:  # the t-interval of the mean over the row's runs
                row[f"{metric}_ci95_low"], row[f"{metric}_ci95_high"] = mean_ci(values) or (None, None)
        params = _numbers(run.record.get("params") for run in members)
        row["params"] = (
            int(params[0]) if params and min(params) == max(params) else _distinct(map(int, params))
        )
        times = _numbers(run.record.get("train_time_s") for run in members)
        row["train_time_s_mean"] = statistics.fmean(times) if times else None
        row["device"] = _distinct(run.record.get("device") for run in members)
        row["epochs"] = _distinct(run.record.get("epochs") for run in members)
        row["partial_test"] = sum(_partial_test(run.record) for run in members)
        row["run_dirs"] = " ".join(sorted(str(run.path) for run in members))
        row[MEMBERS] = members  # for the comparisons and curves; not a column
        rows.append(row)
    return rows


def short_labels(rows: Sequence[dict[str, Any]]) -> tuple[list[str], str]:
    """Each row's label without what all rows share (model, dataset, overrides), and that shared part."""
    tokens = [
        [str(row[k]) for k in ("model", "dataset") if row.get(k)] + row.get("config", "").split()
        for row in rows
    ]
    shared = [token for token in tokens[0] if all(token in other for other in tokens[1:])] if tokens else []
    labels = [
        " ".join(t for t in row_tokens if t not in shared) or " ".join(row_tokens) for row_tokens in tokens
    ]
    return labels, " ".join(shared)


def _partial_test(record: dict[str, Any]) -> bool:
    """Whether the run tested only part of its test set (e.g. +trainer.limit_test_batches=0.2)."""
    tested, total = record.get("test_images"), record.get("test_set_images")
    return isinstance(tested, int) and isinstance(total, int) and tested < total


def sort_rows(rows: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Sort by ``keys`` in turn; ``-key`` sorts descending; a metric name sorts by its mean."""
    for key in reversed(keys):
        name = key.lstrip("-")
        column = f"{name}_mean" if f"{name}_mean" in (rows[0] if rows else {}) else name
        if rows and column not in rows[0]:
            columns = ", ".join(c for c in rows[0] if not c.startswith("_"))
            raise ConfigError(f"--sort {name}: no such column; use one of {columns}")

        def order(row: dict[str, Any], column: str = column) -> tuple:
            value = row.get(column)
            if isinstance(value, (int, float)):
                return (0, value, "")
            return (1 if value in (None, "") else 0, 0, str(value))

        rows.sort(key=order, reverse=key.startswith("-"))
    return rows
