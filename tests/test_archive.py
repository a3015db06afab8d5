"""`python -m results archive`: a finished run published without bulk, still evaluable and predictable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.errors import ConfigError
from cnnlab.runs.archive import archive_run
from tests.conftest import run_entry, tiny_train_args


@pytest.fixture(scope="module")
def finished_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One evaluated run for the module's tests: archiving reads it and leaves it as it was."""
    run_dir = tmp_path_factory.mktemp("project") / "outputs" / "run"
    overrides = ["model=smallcnn", "data=mnist", "evaluate=true", "logger=default"]
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_entry("train", tiny_train_args(run_dir, tiny_data, *overrides), monkeypatch)
    return run_dir


def test_archive_keeps_the_record_config_curves_evaluation_and_weights(
    finished_run: Path, tiny_data: Path, monkeypatch
) -> None:
    project = finished_run.parent.parent
    monkeypatch.chdir(project)
    run_entry("results", ["archive", str(finished_run), "docs/runs/mnist-cnn"], monkeypatch)
    dest = project / "docs" / "runs" / "mnist-cnn"
    kept = {str(path.relative_to(dest)) for path in dest.rglob("*") if path.is_file()}
    assert {"metrics.json", ".hydra/config.yaml", ".hydra/overrides.yaml", "csv/metrics.csv"} <= kept
    assert {"eval/eval_metrics.json", "eval/confusion_matrix.png", "eval/curves.png", "model.ckpt"} <= kept
    assert not any(name.startswith(("tensorboard", "checkpoints")) for name in kept)

    for path in dest.rglob("*"):
        if path.suffix in (".json", ".csv", ".yaml", ".txt"):
            text = path.read_text()
            assert str(project) not in text and str(tiny_data) not in text, path
    record = json.loads((dest / "metrics.json").read_text())
    assert record["run_dir"] == "docs/runs/mnist-cnn"
    assert record["archived_from"] == "outputs/run"
    assert record["best_checkpoint"] == "model.ckpt"

    weights = torch.load(dest / "model.ckpt", weights_only=True)
    assert "optimizer_states" not in weights
    assert all(key.startswith("net.") for key in weights["state_dict"])
    assert weights["cnnlab_config"]["data"]["root"] == "${oc.env:CNNLAB_DATA,data}"


def test_archived_weights_reproduce_the_recorded_test_accuracy(
    finished_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch
) -> None:
    dest = archive_run(finished_run, tmp_path / "archive")
    published = {path: path.read_bytes() for path in dest.rglob("*") if path.is_file()}
    monkeypatch.setenv("CNNLAB_DATA", str(tiny_data))
    monkeypatch.chdir(tmp_path)
    run_entry("evaluate", [f"ckpt_path={dest / 'model.ckpt'}"], monkeypatch)
    # the archive is left as published; the evaluation and its TensorBoard go under outputs/
    assert {path: path.read_bytes() for path in dest.rglob("*") if path.is_file()} == published
    out = tmp_path / "outputs" / "evaluate" / "archive" / "eval"
    assert any((out / "tensorboard").iterdir())
    evaluated = json.loads((out / "eval_metrics.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(json.loads((dest / "metrics.json").read_text())["test_acc"])

    image = tmp_path / "digit.png"
    Image.new("L", (28, 28), color=255).save(image)
    predictions = tmp_path / "predictions.csv"
    run_entry("predict", [f"ckpt_path={dest}", f"image={image}", f"output={predictions}"], monkeypatch)
    assert predictions.read_text().splitlines()[1].startswith(str(image))


def test_archive_refuses_an_unfinished_run_and_an_occupied_folder(finished_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no metrics.json"):
        archive_run(tmp_path / "nothing-here", tmp_path / "a")
    dest = archive_run(finished_run, tmp_path / "b", weights=False)
    assert not (dest / "model.ckpt").exists()
    with pytest.raises(ConfigError, match="already holds files"):
        archive_run(finished_run, dest)
    assert archive_run(finished_run, dest, overwrite=True) == dest
