"""The results table written out: Markdown and CSV, with comparisons and curves when asked for."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.results.rows import (
    DEFAULT_SORT,
    GROUP_FIELDS,
    METRICS,
    OPTIONAL_METRICS,
    PARTIAL,
    Run,
    find_runs,
    sort_rows,
    summarize,
)


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
            *(
                _mean_std(row, metric) + (PARTIAL if metric == "test_acc" and row["partial_test"] else "")
                for metric in metrics
            ),
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
        + f"\n\n{runs} finished runs in {len(rows)} rows "
        + "(mean ± sample std over the runs of a row: its seeds, or its cross-validation folds).\n"
    )
    partial = sum(row["partial_test"] for row in rows)
    if partial:
        text += (
            f"\n{PARTIAL} {partial} run(s) of the marked rows tested only part of the test set "
            "(trainer.limit_test_batches: test_images < test_set_images), not comparable with the others.\n"
        )
    if problems:
        text += "\n**Failed, incomplete or debug runs** (not in the table):\n\n"
        text += "| run | status | overrides | error |\n|---|---|---|---|\n"
        for run in problems:
            overrides = " ".join(run.record.get("overrides") or [])
            error = (run.error or "").replace("|", "\\|").replace("\n", " ")
            text += f"| {run.path} | {run.status} | `{overrides}` | {error} |\n"
    return text


def to_csv(rows: Sequence[dict[str, Any]], problems: Sequence[Run]) -> str:
    """Finished groups, then failed / incomplete runs, one table with a status column."""
    columns = list(rows[0]) if rows else list(GROUP_FIELDS)
    fields = ["status", *(c for c in columns if not c.startswith("_")), "error"]
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
    baseline: Sequence[str] | None = None,
    test: str = "welch",
    curves: bool = False,
    band: str = "minmax",
) -> tuple[str, Path]:
    """Collect, group, sort and write results.csv / results.md; returns the Markdown and the folder.

    ``baseline`` (KEY=VALUE items) compares every row with the row they select; ``curves`` also writes
    curves.png, the validation curves of every row.
    """
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
    baseline_index = None
    if baseline:
        from cnnlab.results import comparison

        wanted = comparison.parse_baseline(baseline)
        baseline_index = comparison.find_baseline(rows, wanted)
        comparison.compare_to_baseline(rows, baseline_index, test)
        text += comparison.markdown(rows, baseline_index, wanted, test)
    if curves:
        from cnnlab.results.curves import plot_row_curves

        path, missing = plot_row_curves(rows, out / "curves.png", band=band, baseline=baseline_index)
        text += f"\nValidation curves: {path.name}"
        text += f" ({len(missing)} runs without csv/metrics.csv left out)\n" if missing else "\n"
    (out / "results.md").write_text(text)
    (out / "results.csv").write_text(to_csv(rows, problems))
    return text, out
