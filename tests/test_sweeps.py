"""Sweeps that survive failures and crashes, and the launcher / search configs for clusters."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import CONF, TINY, job_dir, run_entry, run_forked

FAST = ["model=mlp", "data=mnist", "evaluate=false"]


def sweep_args(sweep_dir: Path, tiny_data: Path, *args: str) -> list[str]:
    """``python -m train`` arguments of a tiny MLP sweep."""
    return ["--multirun", f"hydra.sweep.dir={sweep_dir}", f"data.root={tiny_data}", *TINY, *FAST, *args]


def record(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def job(sweep_dir: Path, number: int) -> Path:
    """A job's folder, named by its number and its overrides (e.g. ``0_data.val_size-1000+...``)."""
    (found,) = [d for d in sweep_dir.iterdir() if d.is_dir() and d.name.split("_", 1)[0] == str(number)]
    return found


def test_failed_job_is_recorded_and_the_sweep_goes_on(
    tmp_path: Path, tiny_data: Path, monkeypatch, capsys
) -> None:
    sweep_dir = tmp_path / "sweep"
    # job 1 holds out more validation images than the 200 training images: a user error at run time
    with pytest.raises(SystemExit) as ended:
        run_entry("train", sweep_args(sweep_dir, tiny_data, "data.val_size=1000,40"), monkeypatch)
    assert ended.value.code == 1  # the sweep ran to the end, then reports
    stderr = capsys.readouterr().err
    failed, completed = record(job(sweep_dir, 0)), record(job(sweep_dir, 1))
    # named by what they vary (and the other overrides), not by the job number alone
    assert "data.val_size-1000" in job(sweep_dir, 0).name and "data.val_size-40" in job(sweep_dir, 1).name
    assert "model-mlp" in job(sweep_dir, 0).name and "data.root" not in job(sweep_dir, 0).name
    assert completed["status"] == "completed" and completed["val_images"] == 40
    assert failed["status"] == "failed" and failed["model"] == "mlp" and failed["dataset"] == "mnist"
    assert (
        failed["error"].startswith("data.val_size=1000 is invalid")
        and "data.val_size=1000" in failed["overrides"]
    )
    assert f"failed: {job(sweep_dir, 0)}: data.val_size=1000" in stderr

    run_entry("results", [str(sweep_dir)], monkeypatch)
    listed = capsys.readouterr().out
    assert "failed" in listed and "data.val_size=1000 is invalid" in listed


def test_killed_sweep_rerun_with_resume_skips_finished_jobs(
    tmp_path: Path, tiny_data: Path, monkeypatch, capsys
) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[sweep]'")
    sweep_dir = tmp_path / "sweep"
    grid = ["seed=0,1", "trainer.max_epochs=2"]
    kill = ["+callbacks.kill._target_=tests.killer.KillAt", "+callbacks.kill.epoch=1"]
    kill += ["+callbacks.kill.batch=2", "+callbacks.kill.seed=${seed}", "+callbacks.kill.only_seed=1"]
    killed = run_forked(
        "train", sweep_args(sweep_dir, tiny_data, *grid, *kill), env={"CNNLAB_TEST_KILL": "1"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    finished = (job(sweep_dir, 0) / "metrics.json").read_text()
    assert (
        not (job(sweep_dir, 1) / "metrics.json").exists()
        and (job(sweep_dir, 1) / "checkpoints" / "last.ckpt").exists()
    )
    names = sorted(d.name for d in sweep_dir.iterdir() if d.is_dir())

    with pytest.raises(SystemExit) as refused:  # refused before any job starts
        run_entry("train", sweep_args(sweep_dir, tiny_data, *grid), monkeypatch)
    assert refused.value.code == 2 and "add resume=true" in capsys.readouterr().err.strip().splitlines()[-1]

    # the same command with resume=true, its jobs run by the joblib launcher in parallel processes
    resumed = sweep_args(sweep_dir, tiny_data, *grid, *kill, "resume=true", "hydra/launcher=parallel")
    run_entry("train", resumed, monkeypatch)
    # resume=true is not part of the job names: the rerun found the same folders, and made no new ones
    assert sorted(d.name for d in sweep_dir.iterdir() if d.is_dir()) == names
    assert (job(sweep_dir, 0) / "metrics.json").read_text() == finished  # skipped, untouched
    resumed_job = record(job(sweep_dir, 1))
    assert (
        resumed_job["status"] == "completed"
        and resumed_job["epochs"] == 2
        and resumed_job["resumed_from"] == "checkpoints/last.ckpt"
    )


def test_parallel_launcher_runs_jobs_with_dataloader_workers(
    tmp_path: Path, tiny_data: Path, monkeypatch
) -> None:
    """The joblib launcher's jobs run in loky workers, whose default start method cannot start
    DataLoader workers; the default data.num_workers (auto, at least 1) must work there."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[sweep]'")
    sweep_dir = tmp_path / "parallel"
    tiny_without_workers = [o for o in TINY if not o.startswith("data.num_workers")]
    args = ["--multirun", "hydra/launcher=parallel", "seed=0,1", f"hydra.sweep.dir={sweep_dir}"]
    run_entry("train", [*args, f"data.root={tiny_data}", *tiny_without_workers, *FAST], monkeypatch)
    jobs = [record(job_dir(sweep_dir, n)) for n in (0, 1)]
    assert [job["status"] for job in jobs] == ["completed", "completed"], [job.get("error") for job in jobs]
    assert {job["seed"] for job in jobs} == {0, 1}
    config = (job_dir(sweep_dir, 0) / ".hydra" / "config.yaml").read_text()
    assert "num_workers: auto" in config  # the loader really used worker processes


def test_optuna_search_runs_trials_and_reports_the_best(
    tmp_path: Path, tiny_data: Path, monkeypatch, capfd
) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install -e '.[sweep]'")
    sweep_dir = tmp_path / "search"
    args = ["hparams_search=optuna", "hydra.sweeper.n_trials=2"]
    run_entry(
        "train", [*args, f"hydra.sweep.dir={sweep_dir}", f"data.root={tiny_data}", *TINY, *FAST], monkeypatch
    )
    trials = [record(job(sweep_dir, n)) for n in (0, 1)]
    output = capfd.readouterr()
    assert "alembic" not in output.out + output.err  # the Optuna storage's migration chatter
    assert all(t["status"] == "completed" for t in trials) and trials[0]["lr"] != trials[1]["lr"]
    best = (sweep_dir / "optimization_results.yaml").read_text()
    assert f"best_value: {max(t['best_val_acc'] for t in trials)}" in best


def test_job_names_fit_a_file_system_and_stay_one_folder_deep() -> None:
    from cnnlab.runs.sweeps import job_dir_name

    assert job_dir_name(3, "model=smallcnn,seed=1") == "3_model-smallcnn+seed-1"
    assert job_dir_name(0, "") == "0"
    assert job_dir_name(1, "data.root=/a/b,seed=2") == "1_data.root-_a_b+seed-2"
    long = ",".join(f"+callbacks.option_{i}=value_{i}" for i in range(20))
    name = job_dir_name(12, long)
    assert len(name) <= 120 and name.startswith("12_+callbacks.option_0-value_0+") and name.endswith("+...")
    translated = f"12_{long}".replace("=", "-").replace(",", "+")
    assert name.removesuffix("+...") + "+" in translated  # cut between two whole overrides


def compose_hydra(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", list(overrides), return_hydra_config=True)


def test_launcher_and_search_configs_compose() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[sweep]'")
    slurm = compose_hydra(
        "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp", "trainer.devices=4"
    )
    launcher = slurm.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.gpus_per_node == 4 and launcher.tasks_per_node == 4 and launcher.timeout_min == 240
    assert slurm.trainer.strategy == "ddp" and slurm.trainer.devices == 4

    parallel = compose_hydra("hydra/launcher=parallel")
    assert parallel.hydra.launcher._target_.endswith("JoblibLauncher") and parallel.hydra.launcher.n_jobs == 2

    search = compose_hydra("hparams_search=optuna")
    sweeper = search.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {"optimizer.lr", "optimizer.weight_decay", "loss.label_smoothing"}
