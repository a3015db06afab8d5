"""docs/results.md is generated from docs/runs: it regenerates identically, and its headlines are
computed from the records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnlab.results.reference_doc import reference_doc
from tests.conftest import REPO, run_entry
from tests.test_real_data import DATA_ROOT, needs


def test_docs_results_regenerates_identically(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    expected = (REPO / "docs" / "results.md").read_text()
    assert reference_doc("docs/runs") == expected, (
        "docs/results.md is stale: run `python -m results docs/runs --doc docs/results.md`"
    )


MODEL_CLASSES = {
    "smallcnn": "cnnlab.models.smallcnn.SmallCNN",
    "airbench94": "cnnlab.models.airbench.AirbenchNet",
    "hog_svm": "cnnlab.baselines.hog_svm.HogSVM",
}


def _archived(root: Path, name: str, record: dict, pairs: list[dict] | None = None) -> None:
    run = root / name
    (run / "eval").mkdir(parents=True)
    full = {"status": "completed", "dataset": "cifar10", "seed": 0, "device": "cpu (2 cores)", **record}
    (run / "metrics.json").write_text(json.dumps(full))
    # archives keep the run's config, whose model class says whether it is a CNN
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(f"model:\n  _target_: {MODEL_CLASSES[full['model']]}\n")
    if pairs is not None:
        (run / "eval" / "eval_metrics.json").write_text(json.dumps({"top_confused_pairs": pairs}))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    pair = {"true": "cat", "predicted": "dog", "count": 120, "fraction_of_true": 0.12}
    for seed, (with_bn, without) in enumerate([(0.80, 0.74), (0.82, 0.76)]):
        bn = {"model": "smallcnn", "seed": seed, "val_acc_target": 0.7}
        _archived(
            root,
            f"bn-{seed}",
            {
                **bn,
                "test_acc": with_bn,
                "epochs_to_val_acc": 4 + seed,
                "overrides": ["experiment=ablation_bn"],
            },
            [pair],
        )
        overrides = ["experiment=ablation_bn", "model.batch_norm=false"]
        _archived(
            root,
            f"nobn-{seed}",
            {**bn, "test_acc": without, "epochs_to_val_acc": 8, "overrides": overrides},
        )
    _archived(root, "hog", {"model": "hog_svm", "test_acc": 0.58})
    return root


def test_headlines_are_computed_from_the_records(runs: Path) -> None:
    text = reference_doc(runs)
    assert "HOG + linear SVM reaches 58.00% test top-1" in text
    assert "smallcnn 81.00% (+23.0 points; `experiment=ablation_bn`, 2 runs)" in text
    assert "81.00% with BN against 75.00% without (+6.0 points)" in text
    assert "70% validation accuracy after 4.5 epochs with BN against 8.0 epochs without" in text
    assert "cat taken for dog 120 times (12.0% of cat)" in text
    assert "| [hog](runs/hog) | `python -m train` | 0.5800 |" in text


def test_missing_runs_are_named_not_invented(tmp_path: Path) -> None:
    _archived(tmp_path / "runs", "hog", {"model": "hog_svm", "test_acc": 0.58})
    text = reference_doc(tmp_path / "runs")
    assert "needs archived runs of both (not yet archived)" in text
    assert "BatchNorm on CIFAR-10 (`experiment=ablation_bn`): not yet archived" in text


def test_confused_pairs_come_from_the_best_evaluated_model(runs: Path) -> None:
    # speedrun94 skips the evaluation: better, but it has no confusion matrix to read
    _archived(runs, "speedrun", {"model": "airbench94", "test_acc": 0.94})
    text = reference_doc(runs)
    assert "best evaluated CIFAR-10 model** (smallcnn, `bn-1`): cat taken for dog 120 times" in text
    assert "has no evaluation" not in text
    assert "airbench94 94.00% (+36.0 points; `defaults`, 1 run), smallcnn 81.00%" in text


@pytest.mark.real_data
@needs("cifar10")
def test_archived_cifar10_weights_reproduce_the_recorded_test_accuracy(tmp_path: Path, monkeypatch) -> None:
    archived = REPO / "docs" / "runs" / "smallcnn-cifar10-seed0"
    monkeypatch.setenv("CNNLAB_DATA", str(DATA_ROOT))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "eval"
    run_entry(
        "evaluate",
        [f"ckpt_path={archived / 'model.ckpt'}", f"output_dir={out}", "tensorboard=false"],
        monkeypatch,
    )
    evaluated = json.loads((out / "eval_metrics.json").read_text())
    recorded = json.loads((archived / "metrics.json").read_text())
    assert evaluated["images"] == 10_000
    assert evaluated["accuracy"] == pytest.approx(recorded["test_acc"], abs=1e-6)
