"""What a run prints and keeps: git state in the record, checkpoints stored once (the time-left line:
tests/test_progress.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from cnnlab.analysis.checkpoints import load_trained_model
from cnnlab.runs.record import git_state

MLP = ["model=mlp", "data=mnist", "trainer.max_epochs=2"]
BY_EPOCH = "callbacks.model_checkpoint.monitor=epoch"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True)


def test_git_state_names_the_commit_and_whether_tracked_files_changed(tmp_path: Path) -> None:
    assert git_state(tmp_path) == {"git_commit": None, "git_dirty": None}  # not a checkout
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git(tmp_path, "add", "code.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True)
    (tmp_path / "untracked.txt").write_text("outputs and notes do not make a tree dirty")
    assert git_state(tmp_path) == {"git_commit": head.stdout.strip(), "git_dirty": False}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)["git_dirty"] is True


def test_last_checkpoint_links_to_the_best_when_they_hold_the_same_weights(train_run, recwarn) -> None:
    # monitoring the epoch number makes the newest epoch the best one (mode=max) or the first (min)
    newest = train_run(*MLP, BY_EPOCH, "callbacks.model_checkpoint.mode=max")
    checkpoints = Path(newest["run_dir"]) / "checkpoints"
    assert newest["best_checkpoint"] == "checkpoints/epoch_002.ckpt"  # epochs count from 1
    assert (checkpoints / "last.ckpt").is_symlink()
    assert (checkpoints / "last.ckpt").resolve() == (checkpoints / "epoch_002.ckpt").resolve()
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_002.ckpt", "last.ckpt"]
    through_link = load_trained_model(checkpoints / "last.ckpt")  # evaluate / predict follow the link
    assert through_link.run_dir == Path(newest["run_dir"]).resolve() and through_link.epoch == 1

    first = train_run(*MLP, BY_EPOCH, "callbacks.model_checkpoint.mode=min")
    checkpoints = Path(first["run_dir"]) / "checkpoints"
    assert first["best_checkpoint"] == "checkpoints/epoch_001.ckpt"
    last = checkpoints / "last.ckpt"
    assert last.is_file() and not last.is_symlink()  # other weights than the best: a file of its own
    steps = {
        p.name: torch.load(p, map_location="cpu", weights_only=False)["global_step"]
        for p in (checkpoints / "epoch_001.ckpt", last)
    }
    assert steps == {"epoch_001.ckpt": 5, "last.ckpt": 10}
    # 5 batches an epoch, fewer than trainer.log_every_n_steps: no warning about it any more
    assert not [w for w in recwarn if "logging interval" in str(w.message)]
