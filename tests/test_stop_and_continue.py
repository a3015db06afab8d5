"""Every way a run stops (kill -9, SIGTERM, Ctrl-C), then continues: resumed, it equals the uninterrupted
run; trained for longer, it completes.

The factors are the signal, the optimizer and the data path, each at three levels, and the
continuation at two. The cells form an orthogonal array (a Latin square of signal over optimizer x data,
each stopped run continued both ways), so every pair of levels of any two factors is run once, in 9
stopped runs instead of 27. Each runs on its dataset's default recipe: its own augmentation, SGD's
cosine schedule where the optimizer is SGD, the loader ``data.loader=auto`` picks (or the DataLoader
with worker processes) and the epoch-end checkpoints.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from cnnlab.callbacks.preemption import Preemption
from cnnlab.runs.preemption import Preempted
from cnnlab.runs.record import read_run_record
from tests.conftest import run_entry
from tests.test_resume import COMPARED, preempted_run, val_rows

OPTIMIZERS = ("sgd", "adam", "adamw")
DATA_PATHS = {
    "mnist": ["data=mnist"],  # its RandomAffine on whole batches: auto picks the device-resident loader
    "cifar10": ["data=cifar10"],  # crop and flip
    "workers": ["data=mnist", "data.loader=torch", "data.num_workers=2"],
}
SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT")
CELLS = [
    (optimizer, data, SIGNALS[(i + j) % len(SIGNALS)])
    for i, optimizer in enumerate(OPTIMIZERS)
    for j, data in enumerate(DATA_PATHS)
]
# two epochs, stopped at epoch 2's third batch: after epoch 1's checkpoint, before epoch 2's
RECIPE = ["model=smallcnn", "evaluate=false", "trainer.max_epochs=2"]


def test_the_cells_cover_every_pair_of_levels() -> None:
    for first, second in ((0, 1), (0, 2), (1, 2)):
        assert len({(cell[first], cell[second]) for cell in CELLS}) == 9


@pytest.mark.slow
@pytest.mark.parametrize(("optimizer", "data", "signal_name"), CELLS, ids=["-".join(cell) for cell in CELLS])
def test_a_stopped_run_resumes_exactly_and_trains_for_longer(
    optimizer: str, data: str, signal_name: str, train_run, tiny_data, tmp_path, monkeypatch
) -> None:
    recipe = [*RECIPE, f"optimizer={optimizer}", *DATA_PATHS[data]]
    reference = train_run(*recipe)

    stopped = tmp_path / "stopped"
    result = preempted_run(stopped, tiny_data, recipe, signal_name)
    signum = signal.Signals[signal_name]
    checkpoints = stopped / "checkpoints"
    if signum == signal.SIGKILL:  # no clean-up at all: epoch 1's checkpoint is the last one
        assert result.returncode == -signum, result.stderr[-3000:]
        assert not (stopped / "metrics.json").exists()
        assert (checkpoints / "last.ckpt").resolve().name == "epoch_001.ckpt"
    else:  # a checkpoint after the batch in progress, a record, and the command that continues
        assert result.returncode == 128 + signum, result.stderr[-3000:]
        record = read_run_record(stopped)
        assert record["status"] == "preempted" and record["signal"] == signal_name
        assert record["epoch"] == 2 and f"python -m train resume={stopped}" in result.stdout
        reason = "stopped by Ctrl-C (SIGINT)" if signum == signal.SIGINT else "preempted by SIGTERM"
        # epoch 1's 5 batches, and epoch 2's batch in progress (its third) finished
        assert f"{reason} in epoch 2, after step 8" in result.stdout
        assert not (checkpoints / "last.ckpt").is_symlink()  # mid-epoch: a checkpoint of its own

    longer = tmp_path / "longer"
    shutil.copytree(stopped, longer, symlinks=True)
    extended = train_run(*recipe, "resume=true", "trainer.max_epochs=3", run_dir=longer)
    assert extended["status"] == "completed" and extended["epochs"] == 3
    assert extended["resumed_from"] == "checkpoints/last.ckpt"

    # the README's words: the run's own overrides, continued in place
    run_entry("train", [f"resume={stopped}"], monkeypatch)
    resumed = read_run_record(stopped)
    assert resumed["status"] == "completed" and resumed["resumed_from"] == "checkpoints/last.ckpt"
    assert {k: resumed[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}
    assert val_rows(stopped) == val_rows(Path(reference["run_dir"]))


def test_a_first_ctrl_c_stops_after_the_batch_and_a_second_at_once(tmp_path, caplog) -> None:
    class Trainer:  # what the callback reads of a trainer, one process
        strategy = type("Strategy", (), {"launcher": None})()
        world_size, current_epoch, global_step = 1, 1, 7

        def save_checkpoint(self, path, weights_only: bool = False) -> None:
            path.write_bytes(b"saved")

    trainer = Trainer()
    callback = Preemption(str(tmp_path), signals=["SIGTERM", "SIGINT"])
    before = signal.getsignal(signal.SIGINT)  # Python's default, or what a test runner set
    callback.on_train_start(trainer, None)
    try:
        assert signal.getsignal(signal.SIGINT) == callback._notice
        callback._notice(signal.SIGINT, None)  # the first Ctrl-C: noted; the batch goes on
        assert "press Ctrl-C again to stop at once" in caplog.text
        with pytest.raises(KeyboardInterrupt):  # the second: now, without a checkpoint
            callback._notice(signal.SIGINT, None)
        assert not (tmp_path / "last.ckpt").exists()
        assert signal.getsignal(signal.SIGINT) == before  # the handlers are given back
    finally:
        callback._restore()

    callback.on_train_start(trainer, None)
    callback._notice(signal.SIGINT, None)
    with pytest.raises(Preempted) as stop:  # at the end of the batch: the checkpoint, then the stop
        callback.on_train_batch_end(trainer, None)
    assert (tmp_path / "last.ckpt").read_bytes() == b"saved"
    assert stop.value.code == 130 and stop.value.reason == "stopped by Ctrl-C (SIGINT)"
    assert not stop.value.requeue  # a person stopped it: a SLURM job is not run again

    callback.on_train_start(trainer, None)
    callback._notice(signal.SIGTERM, None)
    with pytest.raises(Preempted) as stop:
        callback.on_train_batch_end(trainer, None)
    assert stop.value.requeue  # a scheduler's notice: requeued, as conf/callbacks/preemption.yaml asks
