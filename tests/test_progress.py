"""What a run tells a person about its progress: epochs counted from 1 in the progress bar, the
preemption line and the resume line alike, and a time left that follows the machine's load."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from cnnlab.callbacks import progress_bar as bars
from cnnlab.callbacks import remaining_time
from cnnlab.callbacks.remaining_time import RemainingTime
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
    # no second bar for validation, whose cursor moves a log file keeps as stray "[A" lines
    assert "\x1b[A" not in bar and "Validation" not in bar


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


# ------------------------------------------------------------------------------------------- time left


class FakeClock:
    """``time.perf_counter`` that advances only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(remaining_time.time, "perf_counter", fake)
    return fake


@pytest.fixture
def idle(monkeypatch) -> None:
    """A machine with 2 usable cores and a load of 1.0."""
    monkeypatch.setattr(remaining_time.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(remaining_time.os, "getloadavg", lambda: (1.0, 1.0, 1.0), raising=False)


def train_epochs(
    callback: RemainingTime, clock: FakeClock, durations: list[float], max_epochs: int | None = 10
) -> None:
    """Epochs that take ``durations`` seconds, as Lightning calls the callback for them."""
    trainer = SimpleNamespace(current_epoch=0, max_epochs=max_epochs, sanity_checking=False)
    for epoch, seconds in enumerate(durations):
        trainer.current_epoch = epoch
        callback.on_train_epoch_start(trainer, None)
        clock.now += seconds
        callback.on_train_epoch_end(trainer, None)


def logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == remaining_time.__name__]


def test_the_time_left_is_logged_every_epoch_from_the_recent_epochs(clock, idle, caplog) -> None:
    caplog.set_level("INFO", logger=remaining_time.__name__)
    # the machine gets busy after epoch 2: epochs go from 60 s to 180 s
    train_epochs(RemainingTime(), clock, [60, 60, 180, 180, 180, 180, 180, 180, 180, 180])
    assert logged(caplog) == [
        "epoch 1/10 took 60 s: about 9 min left",
        "epoch 2/10 took 60 s: about 8 min left",
        "epoch 3/10 took 3 min: about 12 min left",  # (60 + 60 + 180) / 3 s for each of 7 epochs
        "epoch 4/10 took 3 min: about 14 min left",  # (60 + 180 + 180) / 3 s for 6
        "epoch 5/10 took 3 min: about 15 min left",  # only the busy epochs from here on
        "epoch 6/10 took 3 min: about 12 min left",
        "epoch 7/10 took 3 min: about 9 min left",
        "epoch 8/10 took 3 min: about 6 min left",
        "epoch 9/10 took 3 min: about 3 min left",
        "epoch 10/10 took 3 min",  # nothing left to estimate
    ]


def test_an_epoch_runs_from_the_end_of_the_one_before(clock, idle, caplog) -> None:
    # what happens between epochs (a checkpoint written after on_train_epoch_end) is an epoch's time too
    caplog.set_level("INFO", logger=remaining_time.__name__)
    callback = RemainingTime()
    trainer = SimpleNamespace(current_epoch=0, max_epochs=3, sanity_checking=False)
    callback.on_train_epoch_start(trainer, None)
    clock.now += 50
    callback.on_train_epoch_end(trainer, None)
    clock.now += 10  # after the epoch's end hooks, before the next epoch starts
    trainer.current_epoch = 1
    callback.on_train_epoch_start(trainer, None)
    clock.now += 50
    callback.on_train_epoch_end(trainer, None)
    assert logged(caplog) == ["epoch 1/3 took 50 s: about 2 min left", "epoch 2/3 took 60 s: about 55 s left"]


def test_an_epoch_resumed_partway_is_not_timed_and_sanity_checks_are_ignored(clock, idle, caplog) -> None:
    caplog.set_level("INFO", logger=remaining_time.__name__)
    callback = RemainingTime()
    trainer = SimpleNamespace(current_epoch=0, max_epochs=4, sanity_checking=True)
    callback.on_train_epoch_end(trainer, None)  # validation's sanity check, before any training
    trainer.sanity_checking = False
    # resumed in the middle of epoch 2: Lightning calls no on_train_epoch_start for it
    trainer.current_epoch = 1
    clock.now += 20
    callback.on_train_epoch_end(trainer, None)
    trainer.current_epoch = 2
    callback.on_train_epoch_start(trainer, None)
    clock.now += 60
    callback.on_train_epoch_end(trainer, None)
    assert logged(caplog) == ["epoch 3/4 took 60 s: about 60 s left"]


def test_a_run_without_an_end_logs_the_epoch_time_only(clock, idle, caplog) -> None:
    caplog.set_level("INFO", logger=remaining_time.__name__)
    train_epochs(RemainingTime(), clock, [30, 30], max_epochs=-1)
    assert logged(caplog) == ["epoch 1 took 30 s", "epoch 2 took 30 s"]


def busy_warnings(caplog) -> list[str]:
    return [m for m in logged(caplog) if "other work is slowing the run" in m]


@pytest.mark.parametrize(
    ("load", "cores", "warned"),
    [
        (1.9, 2, False),  # the run's own threads
        (3.9, 2, False),
        (4.0, 2, True),  # twice the usable cores
        (9.5, 2, True),
        (9.5, 8, False),  # the same load on 8 usable cores
    ],
)
def test_a_busy_machine_is_named_once_per_run(monkeypatch, clock, caplog, load, cores, warned) -> None:
    monkeypatch.setattr(remaining_time.os, "getloadavg", lambda: (load, 0.0, 0.0), raising=False)
    monkeypatch.setattr(remaining_time.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    caplog.set_level("INFO", logger=remaining_time.__name__)
    train_epochs(RemainingTime(), clock, [30, 30, 30])
    expected = [f"the load average is {load:.1f} on the {cores} cores this run may use: other work"]
    assert [m[: len(expected[0])] for m in busy_warnings(caplog)] == (expected if warned else [])


def test_the_usable_cores_are_the_process_affinity(monkeypatch) -> None:
    monkeypatch.setattr(remaining_time.os, "sched_getaffinity", lambda pid: {3, 5, 7}, raising=False)
    assert remaining_time.usable_cores() == 3
    monkeypatch.delattr(remaining_time.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(remaining_time.os, "cpu_count", lambda: 6)
    assert remaining_time.usable_cores() == 6


def test_no_load_average_means_no_warning(monkeypatch, clock, caplog) -> None:
    def unavailable() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(remaining_time.os, "getloadavg", unavailable, raising=False)
    caplog.set_level("INFO", logger=remaining_time.__name__)
    train_epochs(RemainingTime(), clock, [30, 30])
    assert busy_warnings(caplog) == [] and len(logged(caplog)) == 2


def test_durations_are_as_precise_as_an_estimate_deserves() -> None:
    assert remaining_time.format_duration(30) == "30 s"
    assert remaining_time.format_duration(34 * 60) == "34 min"
    assert remaining_time.format_duration(7.5 * 3600) == "7.5 h"
