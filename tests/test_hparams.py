"""TensorBoard's HParams columns: what tells runs apart, not the flattened config."""

from __future__ import annotations

import pytest

from cnnlab.runs.record import hparam_metrics, hparams

CONFIG = {
    "seed": 2,
    "model": {"_target_": "cnnlab.models.SmallCNN", "batch_norm": False, "dropout": 0.0},
    "data": {"_target_": "cnnlab.data.ImageDataModule", "name": "cifar10", "batch_size": 128, "root": "/d"},
    "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
    "trainer": {"max_epochs": 15, "accelerator": "cpu"},
    "callbacks": {"model_checkpoint": {"_target_": "x.ModelCheckpoint", "monitor": "val/acc"}},
    "loss": {"label_smoothing": 0.1},
}
CHOICES = {"model": "smallcnn", "data": "cifar10", "optimizer": "sgd", "scheduler": "cosine", "recipe": None}


def test_columns_are_choices_settings_and_overrides() -> None:
    overrides = [
        "experiment=ablation_bn",
        "model.batch_norm=false",
        "seed=2",
        "data.root=/d",
        "hydra.job.chdir=x",
    ]
    overrides += ["+loss.label_smoothing=0.1", "trainer.max_epochs=15"]
    columns = hparams(CONFIG, {**CHOICES, "experiment": "ablation_bn"}, overrides)
    assert (
        columns["model"] == "smallcnn"
        and columns["recipe"] == "none"
        and columns["experiment"] == "ablation_bn"
    )
    assert (columns["lr"], columns["batch_size"], columns["epochs"], columns["seed"]) == (0.1, 128, 15, 2)
    # overrides with their resolved values; where the run read or wrote is no column, nor is a setting twice
    assert columns["model.batch_norm"] is False and columns["loss.label_smoothing"] == 0.1
    assert (
        "data.root" not in columns
        and "hydra.job.chdir" not in columns
        and "trainer.max_epochs" not in columns
    )
    assert not any("_target_" in key or key.startswith("callbacks") for key in columns)
    assert all(isinstance(value, (bool, int, float, str)) for value in columns.values())


def test_without_hydra_choices_the_config_names_model_and_data() -> None:
    columns = hparams(CONFIG)
    assert columns["model"] == "smallcnn" and columns["data"] == "cifar10" and columns["scheduler"] == "none"


def test_metric_columns_come_from_the_record() -> None:
    record = {"best_val_acc": 0.8, "test_acc": 0.79, "test_f1_macro": None, "test_loss": 0.6}
    assert hparam_metrics(record) == {"hparams/best_val_acc": 0.8, "hparams/test_acc": 0.79}


def test_training_logs_the_hparams_entry(train_run, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir = tmp_path / "run"
    record = train_run(
        "model=mlp", "data=mnist", "logger=default", "optimizer.lr=0.05", "seed=3", run_dir=run_dir
    )
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    session = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert session.hparams["model"].string_value == "mlp" and session.hparams["lr"].number_value == 0.05
    assert session.hparams["seed"].number_value == 3 and "optimizer.lr" not in session.hparams
    assert session.hparams["trainer.accelerator"].string_value == "cpu"  # a command-line override
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/experiment").plugin_data.content
    ).experiment
    assert {info.name.tag for info in experiment.metric_infos} == set(hparam_metrics(record))
    assert events.Scalars("hparams/test_f1_macro")[-1].value == pytest.approx(record["test_f1_macro"])
