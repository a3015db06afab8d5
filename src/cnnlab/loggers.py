"""Lightning's loggers, adapted: the CSV logger continues ``metrics.csv`` on resume instead of deleting
it; the TensorBoard logger keeps one event file per process and writes HParams entries whose default
view shows what a sweep varies."""

from __future__ import annotations

import csv
import os
import tempfile
from argparse import Namespace
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import OmegaConf
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from cnnlab.runs.identity import defines_the_run
from cnnlab.runs.record import (
    HPARAM_SETTINGS,
    current_choices,
    hparam_metrics,
    hparam_value,
    hparams,
    task_overrides,
)

# the HParams column an override's key shows under, where it is not the key itself
_COLUMN_OF_SETTING = {key: column for column, key in HPARAM_SETTINGS.items()}


class CSVLogger(LightningCSVLogger):
    """``resume_step``: keep the rows logged before this global step (the checkpoint's) and append.

    Rows at or after it were logged after the checkpoint was saved; the resumed run logs them again.
    Without ``resume_step`` it behaves as Lightning's (an existing metrics.csv is replaced).
    """

    def __init__(self, *args: Any, resume_step: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self.resume_step is not None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(self.log_dir, self.resume_step)
        return super().experiment


class _ContinuedWriter(ExperimentWriter):
    def __init__(self, log_dir: str, resume_step: int) -> None:
        self.resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes metrics.csv here
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            kept = [row for row in reader if int(float(row.get("step") or 0)) < self.resume_step]
        with tempfile.NamedTemporaryFile(
            "w", dir=self.log_dir, delete=False, newline="", suffix=".tmp"
        ) as file:
            writer = csv.DictWriter(file, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(file.name, self.metrics_file_path)
        self.metrics_keys = header  # later rows are appended under the same columns


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger whose event file stays open after ``fit`` and ``test``.

    Lightning closes the writer at the end of each stage; the next write (the test metrics, the
    hparams, the evaluation's images) then opens another event file in the same folder. This one only
    flushes there; the run closes the writer when it is done (``close``).
    """

    @rank_zero_only
    def log_hyperparams(
        self,
        params: dict[str, Any] | Namespace,
        metrics: dict[str, Any] | None = None,
        step: int | None = None,
    ) -> None:
        """With ``metrics``: one HParams entry whose columns mark what this run's sweep varies.

        Without (Lightning's call with the module's hyperparameters) they are only kept for
        hparams.yaml, as Lightning's logger does with ``default_hp_metric=False``.
        """
        if not metrics:
            super().log_hyperparams(params, metrics, step)
            return
        params = vars(params) if isinstance(params, Namespace) else dict(params)
        self.hparams.update(params)
        self.log_metrics(metrics, step)
        file_writer = self.experiment._get_file_writer()
        for summary in hparams_summaries(params, metrics, swept_hparams(Path(self.save_dir))):
            file_writer.add_summary(summary, step)

    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.experiment.flush()
        if status == "success":
            self.save()  # hparams.yaml, as Lightning's does

    def close(self) -> None:
        if self._experiment is not None:
            self.experiment.close()


def hparams_summaries(
    values: Mapping[str, Any], metrics: Mapping[str, float], swept: Collection[str] = ()
) -> list[Summary]:
    """One run's HParams entry: the experiment (its columns), the session's values, the session's end.

    TensorBoard's HParams tab shows five hparam columns by default: those whose ``differs`` is set
    first, then by name (its backend sorts them so; the order written here is not kept). The columns in
    ``swept`` (what the run's sweep varies) are marked, and listed first, so that the default view
    compares the runs instead of showing five settings they share. Values of another type than bool,
    int, float or str are written as strings; None as "none".
    """
    session = plugin_data_pb2.SessionStartInfo()
    infos = []
    for name in sorted(values, key=lambda name: name not in swept):  # stable: the given order otherwise
        value = hparam_value(values[name])
        if isinstance(value, bool):  # before int: a bool is an int, and the tab would show 0 / 1
            session.hparams[name].bool_value = value
            data_type = api_pb2.DATA_TYPE_BOOL
        elif isinstance(value, (int, float)):
            session.hparams[name].number_value = value
            data_type = api_pb2.DATA_TYPE_FLOAT64
        else:
            session.hparams[name].string_value = value
            data_type = api_pb2.DATA_TYPE_STRING
        infos.append(api_pb2.HParamInfo(name=name, type=data_type, differs=name in swept))
    experiment = api_pb2.Experiment(
        hparam_infos=infos,
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metrics],
    )
    start = plugin_data_pb2.HParamsPluginData(session_start_info=session)
    end = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)
    )
    return [
        _hparams_summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
        _hparams_summary(metadata.SESSION_START_INFO_TAG, start),
        _hparams_summary(metadata.SESSION_END_INFO_TAG, end),
    ]


def swept_hparams(run_dir: Path | None = None) -> set[str]:
    """The HParams columns that the sweep of the run in ``run_dir`` varies; empty for a single run.

    Read from what Hydra saved: the job's ``.hydra/hydra.yaml`` (its mode and the sweeper's ``params``,
    where presets and searches put their sweeps) and the sweep's ``multirun.yaml`` (the command line,
    e.g. ``model=smallcnn,mlp``; a job's own overrides hold only its value). Without a saved config, the
    running Hydra job's. Settings show under their column's name (``trainer.max_epochs``: ``epochs``).
    """
    saved = Path(run_dir) / ".hydra" / "hydra.yaml" if run_dir is not None else None
    if saved is not None and saved.is_file():
        hydra, job_dir = OmegaConf.load(saved).hydra, Path(run_dir)
    elif HydraConfig.initialized():
        hydra = HydraConfig.get()
        # a config composed through Hydra's compose API (a library caller, a test) has no job folder
        output_dir = OmegaConf.select(hydra, "runtime.output_dir", default=None)
        if output_dir is None:
            return set()
        job_dir = Path(output_dir)
    else:
        return set()
    if not str(hydra.get("mode")).endswith("MULTIRUN"):  # "MULTIRUN" saved, RunMode.MULTIRUN live
        return set()
    params = OmegaConf.to_container(hydra.sweeper, resolve=False).get("params") or {}
    candidates = [f"{key}={value}" for key, value in params.items()]
    sweep_record = _sweep_record(job_dir)
    if sweep_record is not None:
        task = OmegaConf.load(sweep_record).hydra.overrides.task
        candidates += OmegaConf.to_container(task, resolve=False)
    parser = OverridesParser.create()
    swept = set()
    for candidate in candidates:
        try:
            (override,) = parser.parse_overrides([str(candidate)])
        except HydraException:  # not ours to judge: Hydra reported it when the sweep started
            continue
        # a sweep over where or how the jobs ran (data.num_workers=0,4) varies no HParams column
        if override.is_sweep_override() and defines_the_run(override.key_or_group):
            swept.add(_COLUMN_OF_SETTING.get(override.key_or_group, override.key_or_group))
    return swept


def _sweep_record(job_dir: Path) -> Path | None:
    """The sweep's ``multirun.yaml``, in the sweep directory: the job folder's parent (or above it, for
    a ``hydra.sweep.subdir`` of several levels)."""
    for folder in list(job_dir.parents)[:3]:
        if (folder / "multirun.yaml").is_file():
            return folder / "multirun.yaml"
    return None


def _hparams_summary(tag: str, content: plugin_data_pb2.HParamsPluginData) -> Summary:
    content.version = metadata.PLUGIN_DATA_VERSION
    plugin_data = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin_data))])


def log_run_hparams(
    loggers: Collection[Any], config: dict[str, Any], record: Mapping[str, Any], lr_found: float | None
) -> None:
    """Give every logger what tells this run apart; TensorBoard's HParams tab pairs it with the record's
    figures. ``lr_found``: the LR finder's suggestion the run trained with, instead of the config's."""
    run_hparams = hparams(config, current_choices(), task_overrides())
    if lr_found:
        run_hparams["lr"] = lr_found
    for logger in loggers:
        if isinstance(logger, LightningTensorBoardLogger):
            logger.log_hyperparams(run_hparams, hparam_metrics(record))
        else:
            logger.log_hyperparams(run_hparams)
