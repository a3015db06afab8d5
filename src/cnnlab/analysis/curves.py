"""Training curves from a run's logged metrics (csv/metrics.csv), and a one-line fit diagnosis."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnlab.analysis.figures import save

GAP_OVERFIT = 0.05  # train - val accuracy above this, with validation past its peak: overfitting
GAP_OVERFIT_ALONE = 0.15  # a gap this large is overfitting whatever the trend
STILL_RISING = 0.005  # a last-epoch validation accuracy gain above this: the model was still learning


@dataclass
class History:
    """Per-epoch metrics (index = epoch) and learning rates at fractional epochs."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    learning_rates: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)


@dataclass
class FitDiagnosis:
    verdict: str  # underfitting | good fit | overfitting | unknown
    line: str


def read_history(metrics_csv: Path) -> History | None:
    """The curves in a Lightning CSVLogger file; None when the file is missing or has no epoch."""
    if not metrics_csv.is_file():
        return None
    with metrics_csv.open(newline="") as file:
        rows = list(csv.DictReader(file))
    per_epoch: dict[int, dict[str, float]] = {}
    steps_per_epoch = None
    for row in rows:
        if not row.get("epoch"):
            continue
        epoch = int(float(row["epoch"]))
        values = per_epoch.setdefault(epoch, {})
        for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
            if row.get(key):
                values[key] = float(row[key])
        if row.get("train/loss") and steps_per_epoch is None and row.get("step"):
            steps_per_epoch = (int(float(row["step"])) + 1) / (epoch + 1)
    epochs = sorted(e for e, values in per_epoch.items() if "train/loss" in values)
    if not epochs:
        return None
    history = History(
        train_loss=[per_epoch[e]["train/loss"] for e in epochs],
        train_acc=[per_epoch[e].get("train/acc", np.nan) for e in epochs],
        val_loss=[per_epoch[e]["val/loss"] for e in epochs if "val/loss" in per_epoch[e]],
        val_acc=[per_epoch[e]["val/acc"] for e in epochs if "val/acc" in per_epoch[e]],
    )
    for key in rows[0]:
        if key.startswith("lr-"):
            points = [(float(r["step"] or 0), float(r[key])) for r in rows if r.get(key)]
            positions = [
                step / steps_per_epoch if steps_per_epoch else i for i, (step, _) in enumerate(points)
            ]
            history.learning_rates[key.removeprefix("lr-")] = (positions, [lr for _, lr in points])
    return history


def diagnose_fit(history: History) -> FitDiagnosis:
    """Overfitting / underfitting / good fit from the final train-validation gap and the validation trend.

    Overfitting: validation is past its peak (accuracy fell back, or loss climbed) while training
    accuracy is well above it, or the gap is very large. Underfitting: validation accuracy was still
    climbing in the last epoch, so the run stopped before the model had learnt what it could.
    """
    if not history.val_acc or len(history.val_acc) != history.epochs or np.isnan(history.train_acc).any():
        return FitDiagnosis("unknown", "fit: unknown (no validation metrics per epoch; data.val_size=0?)")
    epochs = history.epochs
    train, val = history.train_acc[-1], history.val_acc[-1]
    gap = train - val
    best_epoch = int(np.argmax(history.val_acc))
    best = history.val_acc[best_epoch]
    numbers = (
        f"after {epochs} epoch{'s' if epochs > 1 else ''} train acc {train:.3f}, val acc {val:.3f} "
        f"(gap {gap:+.3f}), best val acc {best:.3f} at epoch {best_epoch + 1}"
    )
    peaked_early = epochs >= 3 and best_epoch < epochs - 1 - max(1, epochs // 5) and val < best - STILL_RISING
    val_loss_rising = (
        epochs >= 3
        and int(np.argmin(history.val_loss)) < epochs - 1
        and history.val_loss[-1] > 1.1 * min(history.val_loss)
    )
    if gap > GAP_OVERFIT_ALONE or (gap > GAP_OVERFIT and (peaked_early or val_loss_rising)):
        why = "validation accuracy peaked early" if peaked_early else "validation loss rising"
        why = why if peaked_early or val_loss_rising else "training accuracy far above validation"
        return FitDiagnosis(
            "overfitting", f"fit: overfitting: {numbers}; {why} - regularise/augment more, or stop earlier"
        )
    last_gain = history.val_acc[-1] - history.val_acc[-2] if epochs > 1 else None
    if last_gain is None or last_gain > STILL_RISING:
        why = (
            "one epoch only"
            if last_gain is None
            else f"val acc still rising ({last_gain:+.3f} in the last epoch)"
        )
        return FitDiagnosis(
            "underfitting", f"fit: underfitting: {numbers}; {why} - train longer or use a larger model"
        )
    return FitDiagnosis(
        "good fit", f"fit: good fit: {numbers}; validation has levelled off near the training figure"
    )


def plot_curves(history: History, diagnosis: FitDiagnosis, path: Path) -> Path:
    """Loss and accuracy (train and validation) per epoch, and the learning rate."""
    figure = Figure(figsize=(15, 4.6), layout="constrained")
    loss_ax, acc_ax, lr_ax = figure.subplots(1, 3)
    ends = np.arange(1, history.epochs + 1)  # metrics are measured at the end of each epoch
    for ax, train, val, name in (
        (loss_ax, history.train_loss, history.val_loss, "loss"),
        (acc_ax, history.train_acc, history.val_acc, "accuracy"),
    ):
        ax.plot(ends, train, "o-", label=f"train {name}")
        if val:
            ax.plot(ends[: len(val)], val, "s-", label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    for name, (positions, rates) in history.learning_rates.items():
        lr_ax.plot(positions, rates, ".-", label=name)
    if history.learning_rates:
        lr_ax.legend()
    else:  # an empty 0-1 axis read as a learning rate of 0
        lr_ax.text(
            0.5,
            0.5,
            "no learning rate logged\n(no LR monitor, or fewer steps than trainer.log_every_n_steps)",
            transform=lr_ax.transAxes,
            ha="center",
            va="center",
        )
        lr_ax.set_yticks([])
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.set_xlim(-0.2, history.epochs + 0.2)  # epoch 0 (start) to the last epoch's end, also for one epoch
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lr_ax.set_xlabel("epoch (start of)")
    lr_ax.set_title("learning rate")
    lr_ax.grid(alpha=0.3)
    figure.suptitle(diagnosis.line, fontsize=10)
    return save(figure, path)
