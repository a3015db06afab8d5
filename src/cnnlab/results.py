"""The results table: every run record under some run / multirun directories, seeds of one configuration
averaged (mean ± sample std), failed and unfinished runs listed rather than dropped."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cnnlab.errors import ConfigError
from cnnlab.runs.record import RUN_RECORD

# Overrides that say where or how fast a run ran, not what it computed: runs differing only in these
# (and in seed) are seeds of one configuration.
IGNORED_OVERRIDES = ("seed", "hydra.", "paths.", "data.root", "data.num_workers", "data_dir", "log_dir")
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
DEFAULT_SORT = ("dataset", "model", "config")


@dataclass
class Run:
    """One run directory: its record when it finished, else why it has none."""

    path: Path
    status: str  # completed | failed | incomplete
    record: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def config(self) -> str:
        """The run's overrides that define what it computed, in a canonical order."""
        overrides = self.record.get("overrides") or []
        kept = [o for o in overrides if not o.lstrip("+~").startswith(IGNORED_OVERRIDES)]
        kept = [o for o in kept if o.split("=", 1)[0] not in ("model", "data")]
        return " ".join(sorted(kept))

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
            runs[run_dir] = Run(record_path.parent, status, record, record.get("error"))
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
        for metric in (*METRICS, *OPTIONAL_METRICS):
            values = _numbers(run.record.get(metric) for run in members)
            row[f"{metric}_mean"] = statistics.fmean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
            row[f"{metric}_runs"] = len(values)
        params = _numbers(run.record.get("params") for run in members)
        row["params"] = (
            int(params[0]) if params and min(params) == max(params) else _distinct(map(int, params))
        )
        times = _numbers(run.record.get("train_time_s") for run in members)
        row["train_time_s_mean"] = statistics.fmean(times) if times else None
        row["device"] = _distinct(run.record.get("device") for run in members)
        row["epochs"] = _distinct(run.record.get("epochs") for run in members)
        row["run_dirs"] = " ".join(sorted(str(run.path) for run in members))
        rows.append(row)
    return rows


def sort_rows(rows: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Sort by ``keys`` in turn; ``-key`` sorts descending; a metric name sorts by its mean."""
    for key in reversed(keys):
        name = key.lstrip("-")
        column = f"{name}_mean" if f"{name}_mean" in (rows[0] if rows else {}) else name
        if rows and column not in rows[0]:
            raise ConfigError(f"--sort {name}: no such column; use one of {', '.join(rows[0])}")

        def order(row: dict[str, Any], column: str = column) -> tuple:
            value = row.get(column)
            if isinstance(value, (int, float)):
                return (0, value, "")
            return (1 if value in (None, "") else 0, 0, str(value))

        rows.sort(key=order, reverse=key.startswith("-"))
    return rows


def _mean_std(row: dict[str, Any], metric: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if mean is None:
        return "n/a"
    digits = 1 if metric == "epochs_to_val_acc" else 4
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"
    if metric in OPTIONAL_METRICS and row[f"{metric}_runs"] < row["runs"]:
        text += f" ({row[f'{metric}_runs']}/{row['runs']} runs)"  # e.g. the others never reached the target
    return text


def markdown(rows: Sequence[dict[str, Any]], problems: Sequence[Run], by: Sequence[str]) -> str:
    """The table as Markdown, then the failed and unfinished runs."""
    columns = [c for c in GROUP_FIELDS if c in by or c != "config"]
    metrics = dict(METRICS)
    metrics.update({k: v for k, v in OPTIONAL_METRICS.items() if any(row[f"{k}_runs"] for row in rows)})
    header = [*columns, *metrics.values(), "params", "train time (s)", "device", "epochs", "runs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        params = f"{row['params']:,}" if isinstance(row["params"], int) else row["params"]
        time_s = "n/a" if row["train_time_s_mean"] is None else f"{row['train_time_s_mean']:.1f}"
        cells = [
            *(f"`{row[c]}`" if c == "config" and row[c] else row[c] for c in columns),
            *(_mean_std(row, metric) for metric in metrics),
            params,
            time_s,
            row["device"],
            row["epochs"] or "–",
            str(row["runs"]),
        ]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    runs = sum(row["runs"] for row in rows)
    text = (
        "\n".join(lines)
        + f"\n\n{runs} finished runs in {len(rows)} rows (mean ± sample std over the runs of a row).\n"
    )
    if problems:
        text += "\n**Failed or incomplete runs** (not in the table):\n\n"
        text += "| run | status | overrides | error |\n|---|---|---|---|\n"
        for run in problems:
            overrides = " ".join(run.record.get("overrides") or [])
            error = (run.error or "").replace("|", "\\|").replace("\n", " ")
            text += f"| {run.path} | {run.status} | `{overrides}` | {error} |\n"
    return text


def to_csv(rows: Sequence[dict[str, Any]], problems: Sequence[Run]) -> str:
    """Finished groups, then failed / incomplete runs, one table with a status column."""
    fields = ["status", *(rows[0].keys() if rows else GROUP_FIELDS), "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({"status": "completed", **row})
    for run in problems:
        writer.writerow(
            {
                "status": run.status,
                "model": run.record.get("model", ""),
                "dataset": run.record.get("dataset", ""),
                "config": " ".join(run.record.get("overrides") or []),
                "run_dirs": str(run.path),
                "error": run.error or "",
            }
        )
    return buffer.getvalue()


def _natural(path: Path) -> list[Any]:
    """Sort key that puts job 2 before job 10."""
    return [int(part) if part.isdigit() else part for part in path.parts]


def results_table(
    roots: Sequence[Path | str],
    by: Sequence[str] | None = None,
    sort: Sequence[str] | None = None,
    out_dir: Path | str | None = None,
) -> tuple[str, Path]:
    """Collect, group, sort and write results.csv / results.md; returns the Markdown and the folder."""
    unknown = [name for name in by or () if name not in GROUP_FIELDS]
    if unknown:
        raise ConfigError(f"--by {','.join(unknown)}: unknown; group by some of {', '.join(GROUP_FIELDS)}")
    runs = find_runs(roots)
    # rows follow the grouping asked for; by default, datasets then models
    rows = sort_rows(summarize(runs, by or GROUP_FIELDS), list(sort or by or DEFAULT_SORT))
    by = list(by or GROUP_FIELDS)
    problems = sorted((run for run in runs if run.status != "completed"), key=lambda run: _natural(run.path))
    out = Path(out_dir) if out_dir else Path(os.path.commonpath([Path(r).resolve() for r in roots]))
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, problems, by)
    (out / "results.md").write_text(text)
    (out / "results.csv").write_text(to_csv(rows, problems))
    return text, out
