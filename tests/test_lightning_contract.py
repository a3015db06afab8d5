"""The private parts of Lightning this project still relies on, where Lightning has no public hook.

pyproject.toml pins Lightning to the minor versions tested; these checks fail loudly, naming the
piece, when a new Lightning renames or reshapes one, instead of a run silently misbehaving.
"""

from __future__ import annotations

import inspect

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.model_summary import LayerSummary
from lightning.pytorch.utilities.model_summary import ModelSummary as Summary


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize(
    ("owner", "name", "expected"),
    [
        # callbacks/model_checkpoint.py: last.ckpt as a link to the same step's checkpoint
        (ModelCheckpoint, "_save_last_checkpoint", ["self", "trainer", "monitor_candidates"]),
        (ModelCheckpoint, "_save_checkpoint", ["self", "trainer", "filepath"]),
        # callbacks/model_summary.py: the table without the metric objects' rows
        (ModelSummary, "_summary", ["self", "trainer", "pl_module"]),
        # loggers.py: a resumed run's metrics.csv keeps the rows before the checkpoint
        (ExperimentWriter, "_check_log_dir_exists", ["self"]),
    ],
)
def test_the_private_methods_overridden_keep_their_signatures(owner, name, expected) -> None:
    assert hasattr(owner, name), f"Lightning {L.__version__} has no {owner.__name__}.{name}"
    assert parameters(getattr(owner, name)) == expected


def test_the_private_attributes_read_are_there(tmp_path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path)
    assert hasattr(checkpoint, "_last_global_step_saved") and hasattr(checkpoint, "_last_checkpoint_saved")
    csv = CSVLogger(tmp_path)
    assert hasattr(csv, "_experiment") and hasattr(csv, "_fs") and csv.root_dir
    assert hasattr(ExperimentWriter(str(tmp_path)), "metrics_file_path")
    assert hasattr(TensorBoardLogger(tmp_path), "_experiment")
    summary = Summary(BoringModel(), max_depth=1)
    layer = next(iter(summary._layer_summary.values()))
    assert isinstance(layer, LayerSummary) and hasattr(layer, "_module")


def test_the_trainer_internals_read_during_a_fit_are_there(tmp_path) -> None:
    seen = {}

    class Read(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            # callbacks/epoch_seed.py and data/datamodule.py: the batches of the epoch trained so far
            seen["ready"] = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            # training/module.py: whether this step's figures go to the loggers
            seen["should_update_logs"] = trainer._logger_connector.should_update_logs
            # callbacks/preemption.py: SLURM's environment, whose own requeue is turned off
            seen["environment"] = trainer._accelerator_connector.cluster_environment

    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_steps=2,
        callbacks=[Read()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(BoringModel())
    assert seen["ready"] == 2 and isinstance(seen["should_update_logs"], bool)
    assert seen["environment"] is not None
