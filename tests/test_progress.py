"""What a run tells a person about its progress: epochs counted from 1 in the progress bar, the
preemption line and the resume line alike, and a time left that follows the machine's load."""

from __future__ import annotations

import signal
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from cnnlab.callbacks import progress_bar as bars
from cnnlab.runs.record import read_run_record
from cnnlab.runs.resume import checkpoint_position, training_position
from tests.conftest import TINY, run_forked

# ------------------------------------------------------------------------------------- epoch numbers


def test_the_epoch_description_counts_from_1_out_of_max_epochs() -> None:
    assert bars.epoch_description(0, 10) == "Epoch 1/10"
    assert bars.epoch_description(9, 10) == "Epoch 10/10"
    assert bars.epoch_description(2, -1) == "Epoch 3"  # max_epochs=-1: no end
    assert bars.epoch_description(2, None) == "Epoch 3"


def fit_boring_model(callback: L.Callback, tmp_path: Path, max_epochs: int = 2) -> None:
    trainer = L.Trainer(
        max_epochs=max_epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(BoringModel())


def test_the_plain_progress_bar_counts_epochs_from_1(tmp_path, capsys) -> None:
    fit_boring_model(bars.EpochFromOneTQDMProgressBar(), tmp_path)
    shown = capsys.readouterr()
    bar = shown.out + shown.err
    assert "Epoch 1/2" in bar and "Epoch 2/2" in bar
    assert "Epoch 0" not in bar  # also not redrawn for a moment under Lightning's own name


def test_the_rich_progress_bar_counts_epochs_from_1(tmp_path) -> None:
    pytest.importorskip("rich")
    rich_bar = bars.EpochFromOneRichProgressBar()
    shown: list[str] = []

    class ReadDescriptions(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
            shown.extend(str(task.description).strip() for task in rich_bar.progress.tasks)

    trainer_callbacks = [rich_bar, ReadDescriptions()]
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=1,
        limit_val_batches=1,
        callbacks=trainer_callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(BoringModel())
    epochs = sorted({d for d in shown if d.startswith("Epoch")})
    assert epochs == ["Epoch 1/2", "Epoch 2/2"]


def test_the_bar_is_rich_in_a_terminal_and_plain_elsewhere(monkeypatch) -> None:
    monkeypatch.setattr(bars, "in_terminal", lambda: True)
    assert isinstance(bars.progress_bar(), bars.EpochFromOneRichProgressBar)
    monkeypatch.setattr(bars, "in_terminal", lambda: False)
    plain = bars.progress_bar()
    assert isinstance(plain, bars.EpochFromOneTQDMProgressBar) and plain.refresh_rate == 100


def fit_loop_state(started: int, processed: int, step: int) -> dict:
    """A training checkpoint's fields that say where it is (as Lightning 2 writes them)."""
    progress = {"ready": started, "started": started, "processed": processed, "completed": processed}
    return {
        "global_step": step,
        "epoch": processed,  # Lightning's 0-based epoch: not what the position is read from
        "loops": {"fit_loop": {"epoch_progress": {"current": progress, "total": progress}}},
    }


def test_a_checkpoint_position_counts_epochs_from_1_and_says_whether_mid_epoch() -> None:
    # epoch_001.ckpt: the first epoch's batches and validation done
    assert checkpoint_position(fit_loop_state(1, 1, 76)) == "at the end of epoch 1, after step 76"
    # a step checkpoint or a preemption 76 steps into the second epoch
    assert checkpoint_position(fit_loop_state(2, 1, 152)) == "in epoch 2, after step 152"
    # last.ckpt of a run that finished 2 epochs
    assert checkpoint_position(fit_loop_state(2, 2, 152)) == "at the end of epoch 2, after step 152"
    assert checkpoint_position({"global_step": 9, "loops": {}}) == "after step 9"
    assert training_position(2, 152, mid_epoch=True) == "in epoch 2, after step 152"


def test_the_preemption_line_and_the_resume_line_name_the_same_point_alike(
    train_run, tiny_data, tmp_path
) -> None:
    # SIGTERM before batch 2 of the second epoch: that batch finishes, 5 + 3 steps in all
    run_dir = tmp_path / "preempted"
    kill = ["+callbacks.kill._target_=tests.killer.KillAt", "+callbacks.kill.epoch=1"]
    kill += ["+callbacks.kill.batch=2", "+callbacks.kill.signal=SIGTERM"]
    overrides = ["model=mlp", "data=mnist", "trainer.max_epochs=2", "data.augment=[]"]
    args = [f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", *TINY, *overrides, *kill]
    preempted = run_forked("train", args, env={"CNNLAB_TEST_KILL": "1"}, new_session=True)
    assert preempted.returncode == 128 + signal.SIGTERM, preempted.stderr[-3000:]
    assert "preempted by SIGTERM in epoch 2, after step 8: saved checkpoints/last.ckpt" in preempted.stdout
    assert read_run_record(run_dir)["epoch"] == 2
    shown = preempted.stdout + preempted.stderr
    assert "Epoch 1/2" in shown and "Epoch 2/2" in shown and "Epoch 0" not in shown

    log_before = (run_dir / "train.log").read_text()
    resumed = train_run(*overrides, "ckpt_path=last", run_dir=run_dir)
    assert resumed["status"] == "completed"
    resumed_log = (run_dir / "train.log").read_text()[len(log_before) :]
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'} in epoch 2, after step 8" in resumed_log
