"""`python -m results DIR --curves`: validation accuracy and loss per epoch, one line per table row.

Each line is the mean over the row's runs at each epoch, with a band (min–max or ±1 std) around it,
read from every run's Lightning CSV log (``csv/metrics.csv``).
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.errors import ConfigError
from cnnlab.results.rows import MEMBERS, short_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS_CSV = Path("csv") / "metrics.csv"
CURVES = {"val/acc": "validation accuracy", "val/loss": "validation loss"}
BANDS = ("minmax", "std")
SINGLE_MARKER_SIZE = 8  # a row with one epoch is one point: large enough to see


def read_validation_curves(metrics_csv: Path) -> dict[str, dict[int, float]] | None:
    """{"val/acc": {epoch: value}, "val/loss": ...} from a CSVLogger file; None when absent or empty.

    Epochs are counted from 1; a resumed run's repeated epoch keeps its last value.
    """
    if not metrics_csv.is_file():
        return None
    curves: dict[str, dict[int, float]] = {name: {} for name in CURVES}
    with metrics_csv.open(newline="") as file:
        for line in csv.DictReader(file):
            if not line.get("epoch"):
                continue
            for name, per_epoch in curves.items():
                if line.get(name):
                    per_epoch[int(float(line["epoch"])) + 1] = float(line[name])
    return curves if any(curves.values()) else None


def row_curve(runs: Sequence[dict[int, float]], band: str) -> tuple[np.ndarray, ...]:
    """(epochs, mean, lower, upper) over the runs at each epoch any of them reached."""
    epochs = np.array(sorted({epoch for run in runs for epoch in run}))
    mean, lower, upper = [], [], []
    for epoch in epochs:
        values = np.array([run[epoch] for run in runs if epoch in run and math.isfinite(run[epoch])])
        centre = values.mean() if values.size else np.nan
        if band == "std":
            spread = values.std(ddof=1) if values.size > 1 else 0.0
            low, high = centre - spread, centre + spread
        else:
            low, high = (values.min(), values.max()) if values.size else (np.nan, np.nan)
        mean.append(centre)
        lower.append(low)
        upper.append(high)
    return epochs, np.array(mean), np.array(lower), np.array(upper)


def plot_row_curves(
    rows: Sequence[dict[str, Any]], path: Path, band: str = "minmax", baseline: int | None = None
) -> tuple[Path, list[str]]:
    """Write the figure to ``path``; returns it and the runs that had no CSV log (left out)."""
    figure, missing = row_curves_figure(rows, band, baseline)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path, missing


def row_curves_figure(
    rows: Sequence[dict[str, Any]], band: str = "minmax", baseline: int | None = None
) -> tuple[Figure, list[str]]:
    """The figure ``plot_row_curves`` writes, and the runs that had no CSV log.

    Epochs are whole numbers on the x axis, half an epoch either side of the first and the last; a row
    with a single epoch is one large point with its band as an error bar and its value beside it.
    """
    # only for --curves: the table itself needs no matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if band not in BANDS:
        raise ConfigError(f"--band {band}: unknown; use one of {', '.join(BANDS)}")
    missing: list[str] = []
    per_row: list[tuple[str, list[dict[str, dict[int, float]]]]] = []
    labels, shared = short_labels(rows)
    for index, row in enumerate(rows):
        curves = []
        for run in row[MEMBERS]:
            read = read_validation_curves(run.path / METRICS_CSV)
            if read is None:
                missing.append(str(run.path))
            else:
                curves.append(read)
        if curves:
            label = labels[index]
            runs = f"{len(curves)} run" + ("s" if len(curves) > 1 else "")
            prefix = "baseline: " if index == baseline else ""
            per_row.append((f"{prefix}{label} ({runs})", curves))
    if not per_row:
        raise ConfigError(
            f"--curves: no run has {METRICS_CSV}; train with logger=default or logger=csv to log the curves"
        )
    targets = {run.record.get("val_acc_target") for row in rows for run in row[MEMBERS]}
    runs = [run for _, curves in per_row for run in curves]
    last_epoch = max((epoch for run in runs for per_epoch in run.values() for epoch in per_epoch), default=1)
    figure = Figure(figsize=(12, 4.4 + 0.25 * len(per_row)), layout="constrained")
    axes = figure.subplots(1, len(CURVES))
    for ax, (name, title) in zip(axes, CURVES.items(), strict=True):
        for label, curves in per_row:
            epochs, mean, lower, upper = row_curve([run[name] for run in curves], band)
            if not epochs.size:
                continue
            width = 2.5 if label.startswith("baseline: ") else 1.5
            if epochs.size == 1:  # one point: a large marker, the band as an error bar (no area to fill)
                ax.errorbar(
                    epochs,
                    mean,
                    yerr=[mean - lower, upper - mean],
                    fmt="o",
                    markersize=SINGLE_MARKER_SIZE,
                    capsize=6,
                    elinewidth=width,
                    label=label,
                )
                # the value itself: a lone point on a tall axis is hard to read off
                point = (epochs[0], mean[0])
                ax.annotate(f"{mean[0]:.3f}", point, xytext=(12, 0), textcoords="offset points", va="center")
                continue
            (line,) = ax.plot(epochs, mean, marker="o", markersize=3, label=label, lw=width)
            ax.fill_between(epochs, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)
        if name == "val/acc" and len(targets) == 1 and None not in targets:  # the epochs_to_val_acc line
            ax.axhline(next(iter(targets)), color="grey", linestyle="--", linewidth=1, label="val_acc_target")
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        # whole epochs from 1 to the last, half an epoch either side: one epoch is one tick, "1", in the
        # middle (matplotlib's own limits for a single x were 0.96-1.04)
        ax.set_xlim(0.5, last_epoch + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    spread = "min–max over the runs" if band == "minmax" else "±1 std over the runs"
    title = f"Validation curves: mean per row, band {spread}"
    if last_epoch == 1:
        title = f"Validation after the only epoch: mean per row, bar {spread}"
    # the settings all rows share, wrapped to the figure's width
    figure.suptitle(f"{title}\n" + textwrap.fill(f"all rows: {shared}", 130) if shared else title)
    handles, names = axes[0].get_legend_handles_labels()
    # the rows in their order (error bars come after lines otherwise), the target line last
    order = sorted(range(len(names)), key=lambda i: names[i] == "val_acc_target")
    handles, names = [handles[i] for i in order], [names[i] for i in order]
    figure.legend(
        handles, names, loc="outside lower center", ncols=1 if len(per_row) > 3 else 2, fontsize="small"
    )
    return figure, missing
