"""TensorBoard's HParams columns: what tells runs apart, not the flattened config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cnnlab.loggers import hparams_summaries, swept_hparams
from cnnlab.runs.record import hparam_metrics, hparams
from tests.conftest import CONF, TINY, run_entry

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


def experiment_of(summaries: list) -> Any:
    """The Experiment proto (the HParams columns) among a run's hparams summaries."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    (experiment,) = [
        plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content).experiment
        for summary in summaries
        for value in summary.value
        if value.tag == metadata.EXPERIMENT_TAG
    ]
    return experiment


def default_columns(experiment: Any) -> list[str]:
    """The hparam columns TensorBoard's HParams tab shows before the user picks: its backend sorts the
    experiment's columns (``differs`` first, then by name), its page ticks the first five."""
    from tensorboard.plugins.hparams import api_pb2, backend_context

    shown = api_pb2.Experiment()
    shown.CopyFrom(experiment)
    backend_context._sort_and_reduce_to_hparams_limit(shown, 1000)  # the page asks for 1000
    return [info.name for info in shown.hparam_infos][:5]


def test_the_default_view_shows_what_the_sweep_varies() -> None:
    from tensorboard.plugins.hparams import api_pb2

    values = hparams(CONFIG, CHOICES, ["model=smallcnn", "data=cifar10", "evaluate=false"])
    values["evaluate"] = False
    metrics = {"hparams/test_acc": 0.8}
    unmarked = experiment_of(hparams_summaries(values, metrics))
    # what the issue saw: five columns the runs share, alphabetically, and not the model
    assert default_columns(unmarked) == ["augment", "batch_size", "data", "epochs", "evaluate"]

    experiment = experiment_of(hparams_summaries(values, metrics, swept={"model", "seed"}))
    assert default_columns(experiment) == ["model", "seed", "augment", "batch_size", "data"]
    infos = {info.name: info for info in experiment.hparam_infos}
    assert [name for name, info in infos.items() if info.differs] == ["model", "seed"]
    assert [info.name for info in experiment.hparam_infos][:2] == ["model", "seed"]
    # a bool stays a bool (not 0 / 1), None is "none"; the metric columns are the given ones
    assert infos["evaluate"].type == api_pb2.DATA_TYPE_BOOL and infos["lr"].type == api_pb2.DATA_TYPE_FLOAT64
    assert infos["recipe"].type == api_pb2.DATA_TYPE_STRING
    assert [info.name.tag for info in experiment.metric_infos] == ["hparams/test_acc"]


def write_job(sweep_dir: Path, mode: str, params: dict[str, str] | None, command_line: list[str]) -> Path:
    """A job folder as Hydra leaves it: .hydra/hydra.yaml, and the sweep's multirun.yaml above it."""
    from omegaconf import OmegaConf

    job_dir = sweep_dir / "0_model-smallcnn"
    (job_dir / ".hydra").mkdir(parents=True)
    hydra = {"mode": mode, "sweeper": {"params": params}, "runtime": {"output_dir": str(job_dir)}}
    OmegaConf.save(
        {"hydra": {**hydra, "overrides": {"task": ["model=smallcnn"]}}}, job_dir / ".hydra/hydra.yaml"
    )
    OmegaConf.save({"hydra": {**hydra, "overrides": {"task": command_line}}}, sweep_dir / "multirun.yaml")
    return job_dir


def test_swept_columns_come_from_the_command_line_and_the_sweeper_params(tmp_path: Path) -> None:
    command_line = [
        "model=smallcnn,mlp",
        "data=mnist",
        "trainer.max_epochs=1,2",
        "+trainer.limit_train_batches=10",
        "optimizer.lr=range(0.1,0.3,0.1)",
        "hydra.sweep.dir=${paths.log_dir}/x",
    ]
    job_dir = write_job(
        tmp_path / "sweep", "MULTIRUN", {"seed": "0,1,2", "model.dropout": "0.1"}, command_line
    )
    # settings under their column's name (trainer.max_epochs: epochs); fixed values are not swept
    assert swept_hparams(job_dir) == {"model", "epochs", "lr", "seed"}


def test_a_single_run_varies_nothing(tmp_path: Path) -> None:
    job_dir = write_job(tmp_path / "runs", "RUN", None, ["model=smallcnn,mlp"])
    assert swept_hparams(job_dir) == set()
    assert swept_hparams(tmp_path / "not_a_run") == set()  # no saved config, no Hydra job running
    # a config composed with Hydra's compose API, as a library caller (or an earlier test) leaves it
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(str(CONF), version_base="1.3"):
        HydraConfig.instance().set_config(compose("train", return_hydra_config=True))
        assert swept_hparams(tmp_path / "not_a_run") == set()


def test_a_sweeps_tensorboard_shows_its_model_column(tiny_data: Path, tmp_path: Path, monkeypatch) -> None:
    """``train --multirun model=mlp,smallcnn``: both jobs' HParams entries mark model as what differs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    sweep_dir = tmp_path / "sweep"
    args = ["--multirun", f"hydra.sweep.dir={sweep_dir}", f"data.root={tiny_data}", *TINY]
    run_entry("train", [*args, "data=mnist", "model=mlp,smallcnn", "logger=tensorboard"], monkeypatch)
    jobs = sorted(path for path in sweep_dir.iterdir() if path.is_dir())
    assert len(jobs) == 2
    for job in jobs:
        events = EventAccumulator(str(job / "tensorboard"))
        events.Reload()
        experiment = plugin_data_pb2.HParamsPluginData.FromString(
            events.SummaryMetadata("_hparams_/experiment").plugin_data.content
        ).experiment
        assert [info.name for info in experiment.hparam_infos if info.differs] == ["model"]
        assert default_columns(experiment)[0] == "model"
