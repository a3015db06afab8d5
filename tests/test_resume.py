"""Resume after a real crash, reproducibility, and the rules that keep a run directory intact."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from cnnlab.runs.record import read_run_record
from tests.conftest import TINY, run_entry, run_forked

# 2 short epochs that learn something (adam, no augmentation), no post-run analysis
FAST = [
    "model=smallcnn",
    "data=mnist",
    "optimizer=adam",
    "data.augment=[]",
    "evaluate=false",
    "trainer.max_epochs=2",
]
KILL = ["+callbacks.kill._target_=tests.killer.KillAt", "+callbacks.kill.epoch=1", "+callbacks.kill.batch=2"]
COMPARED = ("test_acc", "test_loss", "test_f1_macro", "best_val_acc", "epochs")


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without the timing columns (images per second differ from run to run)."""
    with (run_dir / "csv" / "metrics.csv").open() as file:
        return [{k: v for k, v in row.items() if "per_s" not in k} for row in csv.DictReader(file)]


def val_rows(run_dir: Path) -> list[dict[str, str]]:
    """The validation figures of metrics.csv, one row per epoch."""
    rows = [{k: v for k, v in row.items() if k.startswith("val/")} for row in metric_rows(run_dir)]
    return [row for row in rows if any(row.values())]


def killed_run(run_dir: Path, tiny_data: Path, *extra: str, base: list[str] = FAST) -> None:
    """Train in a subprocess that SIGKILLs itself in the middle of its last epoch (1 of 0, 1)."""
    args = [f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", *TINY, *base, *KILL, *extra]
    result = run_forked("train", args, env={"CNNLAB_TEST_KILL": "1"})
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert not (run_dir / "metrics.json").exists() and (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_two_runs_with_one_seed_give_identical_metrics(train_run) -> None:
    first = train_run(*FAST, "deterministic=true", "seed=3")
    second = train_run(*FAST, "deterministic=true", "seed=3")
    assert {k: first[k] for k in COMPARED} == {k: second[k] for k in COMPARED}
    assert metric_rows(Path(first["run_dir"])) == metric_rows(Path(second["run_dir"]))


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(train_run, tiny_data, tmp_path) -> None:
    reference = train_run(*FAST)
    run_dir = tmp_path / "killed"
    killed_run(run_dir, tiny_data)
    log_before = (run_dir / "train.log").read_text()
    # killed in epoch 2: last.ckpt is the link to epoch 1's checkpoint, the one copy of those weights
    assert (run_dir / "checkpoints" / "last.ckpt").resolve().name == "epoch_001.ckpt"

    resumed = train_run(*FAST, "ckpt_path=last", run_dir=run_dir)
    assert {k: resumed[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}
    assert resumed["resumed_from"] == "checkpoints/last.ckpt" and resumed["status"] == "completed"
    # the log continues: every epoch's rows once, equal to the uninterrupted run's
    assert metric_rows(run_dir) == metric_rows(Path(reference["run_dir"]))
    log = (run_dir / "train.log").read_text()  # appended: the killed attempt's lines, then the resumed one's
    assert log.startswith(log_before) and "resuming from" in log[len(log_before) :]
    # epochs counted from 1, as in epoch_001.ckpt
    assert "at the end of epoch 1, after step 5" in log[len(log_before) :]


def test_step_checkpoints_resume_mid_epoch_to_the_same_epoch_count(train_run, tiny_data, tmp_path) -> None:
    run_dir = tmp_path / "steps"
    killed_run(run_dir, tiny_data, "callbacks.step_checkpoint.every_n_train_steps=2")
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 6  # epoch 1 was killed at its batch 2: the step-6 checkpoint, mid-epoch
    # last.ckpt had linked to epoch_001.ckpt; the step checkpoint replaced the link, not the best epoch
    assert not (run_dir / "checkpoints" / "last.ckpt").is_symlink()
    best = torch.load(run_dir / "checkpoints" / "epoch_001.ckpt", map_location="cpu", weights_only=False)
    assert best["global_step"] == 5
    resumed = train_run(
        *FAST, "callbacks.step_checkpoint.every_n_train_steps=2", "resume=true", run_dir=run_dir
    )
    assert resumed["epochs"] == 2 and resumed["status"] == "completed"
    epochs = [row["epoch"] for row in metric_rows(run_dir) if row.get("val/acc")]
    assert epochs == ["0", "1"]  # no epoch logged twice, none missing
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("last*")) == ["last.ckpt"]


def test_step_checkpoint_resume_with_the_tensor_loader_matches_an_uninterrupted_run(
    train_run, tiny_data, tmp_path
) -> None:
    # the device-resident loader checkpoints its batch stream, augmentation draws included, and the
    # checkpoint the global generators (dropout)
    tensor = [
        *(o for o in FAST if not o.startswith("data.augment")),
        "data.loader=tensor",
        "model.dropout=0.3",
    ]
    steps = "callbacks.step_checkpoint.every_n_train_steps=2"
    reference = train_run(*tensor, steps)
    run_dir = tmp_path / "tensor"
    killed_run(run_dir, tiny_data, steps, base=tensor)
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 6  # mid-epoch
    resumed = train_run(*tensor, steps, "resume=true", run_dir=run_dir)
    assert {k: resumed[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}
    # the resumed epoch's validation figures equal the uninterrupted run's (its train figures cover
    # only the batches after the resume)
    assert val_rows(run_dir) == val_rows(Path(reference["run_dir"]))


def test_interrupted_run_is_kept_then_resumed_by_directory(
    train_run, tiny_data, tmp_path, capsys, monkeypatch
) -> None:
    run_dir = tmp_path / "interrupted"
    killed_run(run_dir, tiny_data)
    last = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    with pytest.raises(SystemExit) as exit_info:
        train_run(*FAST, "seed=5", run_dir=run_dir)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds an interrupted run" in message and "ckpt_path=last" in message
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == last
    assert (run_dir / ".hydra" / "config.yaml").read_text() == config  # refused before Hydra wrote there

    # resume=<run dir> alone: the run's saved overrides, continued in place
    run_entry("train", [f"resume={run_dir}"], monkeypatch)
    record = read_run_record(run_dir)
    assert record["status"] == "completed" and record["epochs"] == 2
    assert record["resumed_from"] == "checkpoints/last.ckpt" and "seed=5" not in record["overrides"]


def test_resume_true_skips_a_finished_run(train_run, tmp_path, capsys) -> None:
    run_dir = tmp_path / "done"
    first = train_run(*FAST, "trainer.max_epochs=1", run_dir=run_dir)
    again = train_run(*FAST, "trainer.max_epochs=1", "resume=true", run_dir=run_dir)
    assert again == first
    assert "already finished, skipped" in capsys.readouterr().out


def preempted_run(
    run_dir: Path, tiny_data: Path, base: list[str], signal_name: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Train in its own session; at epoch 1, batch 2 its process group (workers too) gets ``signal_name``."""
    kill = [*KILL, f"+callbacks.kill.signal={signal_name}", "+callbacks.kill.group=true"]
    args = [f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", *TINY, *base, *kill]
    # a session of its own: the signal goes to this run's process group, not to pytest's
    return run_forked("train", args, env={"CNNLAB_TEST_KILL": "1", **(env or {})}, new_session=True)


def test_sigterm_mid_epoch_on_the_dataloader_path_with_workers_resumes_exactly(
    train_run, tiny_data, tmp_path
) -> None:
    # DataLoader with 2 worker processes, per-image augmentation in the workers, dropout, deterministic
    loader = [
        *(o for o in FAST if not o.startswith("data.augment")),
        "data.loader=torch",
        "data.num_workers=2",
    ]
    loader += ["deterministic=true", "model.dropout=0.3"]
    reference = train_run(*loader)
    run_dir = tmp_path / "preempted"
    result = preempted_run(run_dir, tiny_data, loader, "SIGTERM")
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    # the notice came before epoch 1's batch 2: that batch is finished, then the checkpoint is saved
    assert "preempted by SIGTERM in epoch 2, after step 8: saved checkpoints/last.ckpt" in result.stdout
    record = read_run_record(run_dir)
    assert record["status"] == "preempted" and record["signal"] == "SIGTERM" and record["global_step"] == 8
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 8  # mid-epoch: the 5 batches of epoch 0 and 3 of epoch 1

    resumed = train_run(*loader, "resume=true", run_dir=run_dir)
    assert resumed["status"] == "completed" and resumed["resumed_from"] == "checkpoints/last.ckpt"
    # deterministic=true sets trainer.deterministic: the same setting, not one that differs
    assert "trainer.deterministic" not in (run_dir / "train.log").read_text()
    assert {k: resumed[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}
    assert val_rows(run_dir) == val_rows(Path(reference["run_dir"]))


def test_sigusr1_under_slurm_saves_records_and_requeues_the_job(train_run, tiny_data, tmp_path) -> None:
    # a stand-in scontrol on PATH records how it was called; SLURM_JOB_ID makes the run a SLURM job
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    run_dir = tmp_path / "slurm"
    slurm = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    result = preempted_run(run_dir, tiny_data, FAST, "SIGUSR1", slurm)
    assert result.returncode == 128 + signal.SIGUSR1, result.stderr[-3000:]
    assert calls.read_text().split() == ["requeue", "4242"]
    record = read_run_record(run_dir)
    assert record["status"] == "preempted" and record["requeued_slurm_job"] == "4242"
    assert "SLURM job 4242 requeued" in result.stdout
    resumed = train_run(*FAST, "resume=true", run_dir=run_dir)  # what the requeued job runs
    assert resumed["status"] == "completed" and resumed["epochs"] == 2


def step_lrs(run_dir: Path) -> dict[int, float]:
    """The learning rate at the start of each epoch, by global step (the LR monitor's rows of metrics.csv)."""
    return {int(row["step"]): float(row["lr-SGD"]) for row in metric_rows(run_dir) if row.get("lr-SGD")}


def last_val_acc(run_dir: Path) -> float:
    return float(val_rows(run_dir)[-1]["val/acc"])


def test_finished_run_trained_for_longer_continues_on_a_rebuilt_schedule(
    train_run, tmp_path, monkeypatch
) -> None:
    # the default recipe's SGD 0.1 with cosine: the old schedule, kept, would climb back to its peak
    recipe = ["model=mlp", "data=mnist", "data.augment=[]", "evaluate=false"]
    recipe += ["trainer.log_every_n_steps=1"]  # the LR monitor's rows: every step of these tiny epochs
    run_dir = tmp_path / "short"
    short = train_run(*recipe, "trainer.max_epochs=2", run_dir=run_dir)
    saved = tmp_path / "short-last.ckpt"
    saved.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes())
    steps_per_epoch = torch.load(saved, map_location="cpu", weights_only=False)["global_step"] // 2

    def rebuilt(epoch: int) -> float:  # cosine over the 4 epochs, at the start of ``epoch``
        return 0.05 * (1 + math.cos(math.pi * epoch / 4))

    def lrs_of_the_added_epochs(run_dir: Path) -> list[float]:
        lrs = step_lrs(run_dir)
        return [lrs[epoch * steps_per_epoch] for epoch in (2, 3)]

    # README's command: the finished run, continued in place with its saved overrides
    run_entry("train", [f"resume={run_dir}", "trainer.max_epochs=4"], monkeypatch)
    longer = read_run_record(run_dir)
    assert longer["status"] == "completed" and longer["epochs"] == 4 and longer["max_epochs"] == 4
    assert longer["resumed_from"] == "checkpoints/last.ckpt"
    assert longer["extended_from"]["epochs"] == 2 and longer["extended_from"]["test_acc"] == short["test_acc"]
    log = (run_dir / "train.log").read_text()
    assert "training the finished run" in log and "rebuilt for" in log
    assert "trainer.max_epochs: 2 -> 4" not in log  # the extension asked for, not a drifted setting
    # (the old 2-epoch cosine, kept, would give 0 and then 0.05 again)
    assert lrs_of_the_added_epochs(run_dir) == pytest.approx([rebuilt(2), rebuilt(3)], rel=1e-4)
    assert last_val_acc(run_dir) >= last_val_acc(Path(short["run_dir"])) - 0.1
    # the time of both parts, and the resumed part beside it
    assert 0 < longer["train_time_resumed_s"] < longer["train_time_s"]
    assert longer["train_time_s"] >= longer["train_time_resumed_s"] + 0.5 * short["train_time_s"]

    # a plain ckpt_path with a larger max_epochs gets the rebuilt schedule too, in a new directory
    plain = train_run(*recipe, "trainer.max_epochs=4", f"ckpt_path={saved}")
    assert "rebuilt for 20 steps" in (Path(plain["run_dir"]) / "train.log").read_text()
    assert lrs_of_the_added_epochs(Path(plain["run_dir"])) == pytest.approx(
        [rebuilt(2), rebuilt(3)], rel=1e-4
    )


def test_finished_run_is_not_shortened(train_run, tmp_path, capsys) -> None:
    run_dir = tmp_path / "done"
    train_run("model=mlp", "data=mnist", "trainer.max_epochs=2", run_dir=run_dir)
    with pytest.raises(SystemExit) as exit_info:
        train_run("model=mlp", "data=mnist", "trainer.max_epochs=1", "resume=true", run_dir=run_dir)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "trainer.max_epochs=1 does not train it for longer" in message


def test_sigkill_after_an_epoch_end_checkpoint_of_a_shortened_epoch_resumes_exactly(
    train_run, tiny_data, tmp_path
) -> None:
    # MNIST's default recipe (its augmentation on whole batches, the loader auto picks, SGD + cosine) with
    # epochs shortened by limit_train_batches: an epoch ends before the loader's pass does, and the
    # epoch-end checkpoint must continue with the next pass, not the rest of this one
    recipe = ["model=smallcnn", "data=mnist", "evaluate=false", "trainer.max_epochs=2"]
    recipe += ["+trainer.limit_train_batches=3"]
    reference = train_run(*recipe)
    run_dir = tmp_path / "killed"
    killed_run(run_dir, tiny_data, base=recipe)
    assert (run_dir / "checkpoints" / "last.ckpt").resolve().name == "epoch_001.ckpt"
    resumed = train_run(*recipe, "ckpt_path=last", run_dir=run_dir)
    assert {k: resumed[k] for k in COMPARED} == {k: reference[k] for k in COMPARED}
    assert val_rows(run_dir) == val_rows(Path(reference["run_dir"]))


@pytest.mark.parametrize(
    ("task", "figures"),
    [
        ("classify", {"best_val_acc": 0.9, "test_acc": 0.8, "test_f1_macro": 0.7}),
        ("detect", {"best_val_map_50": 0.6, "test_map": 0.3, "test_map_50": 0.5}),
        ("segment", {"best_val_miou": 0.6, "test_miou": 0.5, "test_pixel_acc": 0.9}),
    ],
)
def test_a_run_trained_for_longer_keeps_its_shorter_selfs_figures_of_its_task(task, figures) -> None:
    from cnnlab.pipeline import extended_from
    from cnnlab.tasks import get_task

    shorter = {"task": task, "epochs": 2, "max_epochs": 2, "train_time_s": 3.0, "finished_at": "t", **figures}
    kept = extended_from(shorter, get_task(task))
    assert kept == {"epochs": 2, "max_epochs": 2, **figures, "train_time_s": 3.0, "finished_at": "t"}
