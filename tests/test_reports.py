from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cnnlab.analysis.reports import write_classification_reports

NAMES = ["cat", "dog", "car"]


def test_reports_are_consistent(tmp_path: Path) -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    predictions = np.array([0, 1, 1, 0, 1, 0, 1, 2, 2, 1])
    summary = write_classification_reports(labels, predictions, NAMES, tmp_path)
    assert summary["accuracy"] == pytest.approx(0.6)
    rows = list(csv.reader((tmp_path / "confusion_matrix.csv").open()))
    assert rows[0] == ["true \\ predicted", *NAMES]
    matrix = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    assert matrix.sum() == len(labels) and np.trace(matrix) / matrix.sum() == pytest.approx(
        summary["accuracy"]
    )
    report = json.loads((tmp_path / "classification_report.json").read_text())
    assert report["accuracy"] == pytest.approx(0.6) and report["cat"]["support"] == 4
    assert "dog" in (tmp_path / "classification_report.txt").read_text()
    pairs = list(csv.DictReader((tmp_path / "confused_pairs.csv").open()))
    assert (pairs[0]["true"], pairs[0]["predicted"], pairs[0]["count"]) == ("cat", "dog", "2")
    assert {(p["true"], p["predicted"]) for p in pairs} == {("cat", "dog"), ("dog", "cat"), ("car", "dog")}
    assert summary["per_class_accuracy"]["cat"] == pytest.approx(0.5)
