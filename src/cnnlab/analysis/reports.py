"""Tables of a classifier's test predictions: classification report, confusion matrix, confused pairs.

They take plain label / prediction arrays, so neural and classical models are reported alike.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix


def confused_pairs(matrix: np.ndarray, class_names: Sequence[str], top: int = 10) -> list[dict[str, Any]]:
    """The largest off-diagonal cells (true -> predicted), each direction on its own, largest first."""
    off_diagonal = matrix.copy()
    np.fill_diagonal(off_diagonal, 0)
    true_idx, pred_idx = np.unravel_index(np.argsort(off_diagonal, axis=None)[::-1], matrix.shape)
    pairs = []
    for true, pred in zip(true_idx, pred_idx, strict=True):
        count = int(off_diagonal[true, pred])
        if count == 0 or len(pairs) == top:
            break
        pairs.append(
            {
                "true": class_names[true],
                "predicted": class_names[pred],
                "count": count,
                "fraction_of_true": count / max(int(matrix[true].sum()), 1),
            }
        )
    return pairs


def write_classification_reports(
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: Sequence[str],
    out_dir: Path,
    top_pairs: int = 10,
) -> dict[str, Any]:
    """Write classification_report.{txt,json}, confusion_matrix.csv, confused_pairs.csv; return a summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    label_ids = list(range(len(class_names)))
    names = list(class_names)
    text = classification_report(
        labels, predictions, labels=label_ids, target_names=names, digits=4, zero_division=0
    )
    report = classification_report(
        labels, predictions, labels=label_ids, target_names=names, output_dict=True, zero_division=0
    )
    (out_dir / "classification_report.txt").write_text(text)
    (out_dir / "classification_report.json").write_text(json.dumps(report, indent=2) + "\n")

    matrix = confusion_matrix(labels, predictions, labels=label_ids)
    with (out_dir / "confusion_matrix.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["true \\ predicted", *names])
        for name, row in zip(names, matrix, strict=True):
            writer.writerow([name, *row.tolist()])

    pairs = confused_pairs(matrix, names, top_pairs)
    with (out_dir / "confused_pairs.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["true", "predicted", "count", "fraction_of_true"])
        writer.writeheader()
        writer.writerows(pairs)

    per_class_accuracy = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    return {
        "accuracy": float(report["accuracy"]),
        "f1_macro": float(report["macro avg"]["f1-score"]),
        "per_class_accuracy": dict(zip(names, per_class_accuracy.round(6).tolist(), strict=True)),
        "confused_pairs": pairs,
        "confusion_matrix": matrix,
    }
