"""k-fold cross-validation: the stratified, seeded partition, the datamodule's fold, the sweep, the table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data.folds import check_fold, fold_split
from cnnlab.errors import ConfigError
from cnnlab.results.table import results_table
from tests.conftest import TINY, run_entry
from tests.test_datamodule import make_datamodule

# an imbalanced hand-made label vector: 53, 31 and 16 images of classes 0, 1, 2
LABELS = np.random.default_rng(3).permutation(np.repeat([0, 1, 2], [53, 31, 16]))


@pytest.mark.parametrize("folds", [2, 5, 7])
def test_folds_are_disjoint_covering_and_stratified(folds: int) -> None:
    splits = [fold_split(LABELS, folds, fold, seed=0) for fold in range(folds)]
    validation = np.concatenate([val for _, val in splits])
    assert sorted(validation.tolist()) == list(range(len(LABELS)))  # every image validates exactly once
    for train, val in splits:
        assert not set(train) & set(val) and len(train) + len(val) == len(LABELS)
        assert abs(len(val) - len(LABELS) / folds) <= len(np.unique(LABELS))  # about N/K images
        for label, total in zip(*np.unique(LABELS, return_counts=True), strict=True):
            # each class is split as evenly over the folds as its count allows
            assert abs(np.sum(LABELS[val] == label) - total / folds) < 1


def test_partition_is_seeded() -> None:
    first = fold_split(LABELS, 5, 2, seed=0)[1]
    assert np.array_equal(first, fold_split(LABELS, 5, 2, seed=0)[1])
    assert not np.array_equal(first, fold_split(LABELS, 5, 2, seed=1)[1])


@pytest.mark.parametrize(
    ("folds", "fold", "message"),
    [
        (1, 0, "data.folds=1 is invalid; use data.folds >= 2"),
        (0, 0, "data.folds=0 is invalid"),
        (5, 5, "data.fold=5 is invalid for data.folds=5; use 0 <= data.fold < 5"),
        (5, -1, "data.fold=-1 is invalid for data.folds=5"),
    ],
)
def test_bad_fold_settings_are_config_errors(folds: int, fold: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_fold(folds, fold)
    check_fold(None, 7)  # no cross-validation: fold is unused


def test_more_folds_than_images_of_every_class_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="data.folds=60 cannot split 100 images.*use fewer folds"):
        fold_split(LABELS, 60, 0, seed=0)


def test_datamodule_validates_on_its_fold(tiny_data: Path) -> None:
    seen = []
    for fold in range(5):
        dm = make_datamodule(tiny_data, "mnist", "data.folds=5", f"data.fold={fold}", "data.val_size=7")
        assert dm.has_validation
        dm.setup("fit")
        assert dm.val_size == len(dm.val_set) == 40  # N/K of the 200 tiny training images; val_size ignored
        assert not set(dm.train_indices.tolist()) & set(dm.val_indices.tolist())
        labels = dm.train_set.split.labels[dm.val_indices]
        assert torch.bincount(labels, minlength=10).tolist() == [4] * 10  # 20 per class / 5 folds
        seen += dm.val_indices.tolist()
    assert sorted(seen) == list(range(200))


def test_fold_out_of_range_stops_train_in_one_line(
    tiny_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    args = [f"hydra.run.dir={tmp_path / 'run'}", f"data.root={tiny_data}", *TINY, "model=mlp", "data=mnist"]
    with pytest.raises(SystemExit) as exit_info:
        run_entry("train", [*args, "data.folds=5", "data.fold=5"], monkeypatch)
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert error[-1] == "error: data.fold=5 is invalid for data.folds=5; use 0 <= data.fold < 5"


@pytest.mark.slow
def test_cross_validation_sweep_is_one_row_of_the_table(tiny_data: Path, tmp_path: Path, monkeypatch) -> None:
    sweep_dir = tmp_path / "cv"
    args = ["--multirun", "model=mlp", "data=mnist", f"data.root={tiny_data}", *TINY, "data.folds=5"]
    run_entry("train", [*args, "data.fold=0,1,2,3,4", f"hydra.sweep.dir={sweep_dir}"], monkeypatch)
    _, out = results_table([sweep_dir])
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 1 and rows[0]["status"] == "completed" and rows[0]["runs"] == "5"
    assert rows[0]["folds"] == "0/5, 1/5, 2/5, 3/5, 4/5"
    assert "data.folds=5" in rows[0]["config"].split() and "data.fold=" not in rows[0]["config"]
    assert rows[0]["test_acc_std"] != ""  # mean ± std across the folds
    records = [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/metrics.json"))]
    assert sorted(r["fold"] for r in records) == [0, 1, 2, 3, 4]
    assert {r["folds"] for r in records} == {5} and {r["val_images"] for r in records} == {40}
    assert {r["train_images"] for r in records} == {160}
