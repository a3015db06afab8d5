"""`python -m train` end to end on the tiny generated datasets."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import CONF, TINY, job_dir, run_cli, run_entry
from tests.test_models import MODELS

DATASETS = ["cifar10", "mnist", "fashion_mnist"]
RECORD_FIELDS = {
    "model",
    "dataset",
    "params",
    "epochs",
    "seed",
    "train_time_s",
    "best_val_acc",
    "test_acc",
    "test_f1_macro",
    "device",
    "overrides",
    "status",
}


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_on_every_dataset(train_run, model: str, dataset: str) -> None:
    record = train_run(f"model={model}", f"data={dataset}")
    assert record.keys() >= RECORD_FIELDS
    assert record["model"] == model and record["dataset"] == dataset and record["status"] == "completed"
    assert 0.0 <= record["test_acc"] <= 1.0 and 0.0 <= record["test_f1_macro"] <= 1.0
    assert record["epochs"] == 1 and record["test_images"] == 100 and record["train_images"] == 160


def test_run_directory_holds_record_checkpoints_config_and_logs(train_run, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    record = train_run(
        "model=smallcnn", "data=mnist", "trainer.max_epochs=2", "seed=7", "logger=default", run_dir=run_dir
    )
    assert record["params"] == 288_170  # SmallCNN with a 1-channel first conv
    assert record["seed"] == 7 and record["epochs"] == 2 and record["max_epochs"] == 2
    assert "model=smallcnn" in record["overrides"] and record["device"].startswith("cpu")
    # the training loop's time, within the run's own span (testing the best checkpoint restores the
    # callbacks' states, the timer's too: read before that, it is not counted twice)
    span = datetime.fromisoformat(record["finished_at"]) - datetime.fromisoformat(record["started_at"])
    assert 0 < record["train_time_s"] < span.total_seconds()
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (
        run_dir / ".hydra" / "overrides.yaml"
    ).is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    best = run_dir / record["best_checkpoint"]
    checkpoint = torch.load(best, map_location="cpu", weights_only=False)
    # the best checkpoint is the one with the best validation accuracy, and it records its config
    assert checkpoint["callbacks"]
    score = next(v["best_model_score"] for k, v in checkpoint["callbacks"].items() if "ModelCheckpoint" in k)
    assert float(score) == pytest.approx(record["best_val_acc"])
    assert checkpoint["cnnlab_config"]["data"]["name"] == "mnist"
    # the train time is the training loop's up to its end, which the last checkpoint saw just before:
    # not the best checkpoint's time again on top (testing it restores the callbacks' states)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    last_s, best_s = (c["callbacks"]["Timer"]["time_elapsed"]["train"] for c in (last, checkpoint))
    assert last_s <= record["train_time_s"] + 0.01 and record["train_time_s"] < last_s + 0.9 * best_s
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    metrics_csv = (run_dir / "csv" / "metrics.csv").read_text()
    for column in (
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/f1_macro",
        "test/acc",
        "test/f1_macro",
    ):
        assert column in metrics_csv


def test_learns_the_generated_classes(train_run) -> None:
    record = train_run(
        "model=smallcnn", "data=mnist", "trainer.max_epochs=4", "optimizer=adam", "data.augment=[]"
    )
    assert record["test_acc"] > 0.5  # 10 classes: chance is 0.1


def test_val_size_zero_tests_the_last_epoch(train_run) -> None:
    record = train_run("model=mlp", "data=mnist", "data.val_size=0")
    assert record["best_val_acc"] is None and record["val_images"] == 0
    assert record["train_images"] == 200 and record["best_checkpoint"].endswith(".ckpt")


@pytest.mark.parametrize("debug", ["fdr", "limit", "overfit"])
def test_debug_overlays_run(train_run, debug: str) -> None:
    record = train_run("model=smallcnn", "data=mnist", f"debug={debug}", "trainer.max_epochs=2")
    # it ran to the end, and its figures of a few batches are marked as not a result
    assert record["status"] == "debug" and record["debug"] == f"debug={debug}" and "test_acc" in record


@pytest.mark.parametrize("scheduler", ["onecycle", "step", "none"])
@pytest.mark.parametrize("optimizer", ["adamw"])
def test_schedulers_and_optimizers_compose(train_run, scheduler: str, optimizer: str) -> None:
    record = train_run("model=mlp", "data=mnist", f"scheduler={scheduler}", f"optimizer={optimizer}")
    assert record["scheduler"] == scheduler and record["optimizer"] == optimizer


def test_early_stopping_callbacks_compose(train_run) -> None:
    assert train_run("model=mlp", "data=mnist", "callbacks=early_stopping")["status"] == "completed"


def test_defaults_reproduce_the_smallvgg_recipe() -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train")
    assert cfg.model._target_.endswith("SmallVGG") and cfg.data.name == "cifar10"
    assert cfg.optimizer.lr == 0.1 and cfg.optimizer.momentum == 0.9 and cfg.optimizer.nesterov
    assert cfg.optimizer.weight_decay == 5e-4 and cfg.trainer.max_epochs == 40 and cfg.data.batch_size == 128
    assert cfg.scheduler._target_.endswith("cosine")


@pytest.mark.parametrize(
    ("preset", "model", "epochs"),
    [("smallcnn_cifar10", "SmallCNN", 30), ("smallvgg_cifar10", "SmallVGG", 40)],
)
def test_experiment_presets(preset: str, model: str, epochs: int) -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", [f"experiment={preset}", "data=mnist"])
        preset_only = compose("train", [f"experiment={preset}"])
    assert preset_only.model._target_.endswith(model) and preset_only.trainer.max_epochs == epochs
    assert preset_only.data.name == "cifar10" and preset_only.optimizer.lr == 0.1
    assert preset_only.optimizer.weight_decay == 5e-4
    assert cfg.data.name == "mnist" and cfg.model.in_channels == 1  # later overrides still win


def test_finished_run_directory_is_never_overwritten(train_run, tmp_path: Path) -> None:
    run_dir = tmp_path / "done"
    train_run("model=mlp", "data=mnist", run_dir=run_dir)
    before = (run_dir / "metrics.json").read_text()
    with pytest.raises(SystemExit) as exit_info:
        train_run("model=mlp", "data=mnist", run_dir=run_dir)
    assert exit_info.value.code == 2
    assert (run_dir / "metrics.json").read_text() == before


def test_wrong_channel_override_gets_a_one_line_error(train_run, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_run("model=smallcnn", "data=mnist", "model.in_channels=3")
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: the model cannot take data=mnist images of shape (1, 28, 28)")
    assert "model.in_channels" in message


def test_zero_epochs_is_a_config_error(train_run, capsys) -> None:
    with pytest.raises(SystemExit):
        train_run("model=mlp", "data=mnist", "trainer.max_epochs=0")
    assert "trainer.max_epochs=0" in capsys.readouterr().err


@pytest.mark.slow
def test_missing_data_is_one_line_naming_path_env_and_download(tmp_path: Path, monkeypatch, capsys) -> None:
    empty = tmp_path / "nothing-here"
    monkeypatch.setenv("CNNLAB_DATA", str(empty))
    with pytest.raises(SystemExit) as stopped:
        run_entry(
            "train", ["data=mnist", "model=smallcnn", f"hydra.run.dir={tmp_path / 'run'}", *TINY], monkeypatch
        )
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: MNIST not found") and str(empty) in last
    assert "CNNLAB_DATA" in last and "data.download=true" in last


@pytest.mark.slow
def test_unknown_model_lists_the_available_models(tmp_path: Path, tiny_data: Path) -> None:
    result = run_cli(["-m", "train", "model=resnet999", f"data.root={tiny_data}"], cwd=tmp_path)
    assert result.returncode != 0
    assert result.returncode == 2 and "error: there is no model option resnet999;" in result.stderr
    for model in MODELS:
        assert model in result.stderr


@pytest.mark.slow
def test_multirun_writes_one_directory_per_job(tmp_path: Path, tiny_data: Path, monkeypatch, capsys) -> None:
    sweep = tmp_path / "sweep"
    args = ["--multirun", "model=smallcnn,smallvgg", "data=mnist", f"data.root={tiny_data}"]
    run_entry("train", [*args, f"hydra.sweep.dir={sweep}", *TINY], monkeypatch)
    records = [json.loads((job_dir(sweep, job) / "metrics.json").read_text()) for job in (0, 1)]
    assert [r["model"] for r in records] == ["smallcnn", "smallvgg"]
    assert records[0]["params"] != records[1]["params"]
    assert "smallcnn on mnist: test acc" in capsys.readouterr().out
