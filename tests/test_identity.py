"""What defines a run (cnnlab.runs.identity): its categories, conf/hydra/default.yaml tied to it, and each
consumer reading it: results rows, HParams columns, resume checks, the reference doc, the suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cnnlab.runs import identity
from cnnlab.runs.identity import Category, category
from cnnlab.runs.record import flatten_config
from tests.conftest import REPO

CONF = REPO / "conf"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("model", Category.CONFIGURATION),
        ("optimizer.lr", Category.CONFIGURATION),
        ("trainer.precision", Category.CONFIGURATION),  # bf16 computes other numbers
        ("data.loader", Category.CONFIGURATION),  # the tensor path draws its augmentations otherwise
        ("callbacks", Category.CONFIGURATION),  # callbacks=[default,ema] trains otherwise
        ("callbacks.model_checkpoint.monitor", Category.CONFIGURATION),  # which checkpoint is tested
        ("data.split_seed", Category.CONFIGURATION),  # another validation split
        ("seed", Category.REPLICATE),
        ("data.fold", Category.REPLICATE),
        ("data.folds", Category.CONFIGURATION),
        ("hydra.run.dir", Category.LOCATION),
        ("hydra/launcher", Category.LOCATION),
        ("paths.cache_dir", Category.LOCATION),
        ("data.root", Category.LOCATION),
        ("data.download", Category.LOCATION),
        ("data.num_workers", Category.EXECUTION),
        ("deterministic", Category.EXECUTION),
        ("trainer.benchmark", Category.EXECUTION),
        ("logger", Category.REPORTING),
        ("logger.tensorboard.name", Category.REPORTING),
        ("evaluate", Category.REPORTING),
        ("callbacks.progress_bar.refresh_rate", Category.REPORTING),
        ("resume", Category.CONTINUATION),
        ("ckpt_path", Category.CONTINUATION),
        ("callbacks.step_checkpoint.every_n_train_steps", Category.CONTINUATION),
    ],
)
def test_each_setting_has_one_category(key: str, expected: Category) -> None:
    assert category(key) is expected
    assert identity.defines_the_run(key) == (expected in (Category.CONFIGURATION, Category.REPLICATE))


def test_a_subtree_is_matched_whole_and_overrides_by_their_key() -> None:
    assert category("data.root_x") is Category.CONFIGURATION  # not a prefix of data.root's name
    assert category("+logger.csv.flush_logs_every_n_steps=10") is Category.REPORTING
    assert category("~callbacks.progress_bar") is Category.REPORTING
    overrides = ["model=mlp", "seed=1", "data.root=/d", "logger=csv", "resume=true", "optimizer.lr=0.01"]
    assert identity.run_overrides(overrides) == ["model=mlp", "seed=1", "optimizer.lr=0.01"]
    assert identity.configuration_overrides(overrides) == ["model=mlp", "optimizer.lr=0.01"]
    assert identity.comparable_overrides(overrides, ignoring=["optimizer.lr"]) == ["model=mlp", "seed=1"]


def _train_config(overrides: list[str] = (), hydra: bool = False):
    from cnnlab.runs.sweeps import register_resolvers

    register_resolvers()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", list(overrides), return_hydra_config=hydra)


def test_sweep_folder_names_leave_out_what_the_policy_leaves_out() -> None:
    """conf/hydra/default.yaml's exclude_keys are the module's: Hydra cannot import it, so this ties them."""
    listed = OmegaConf.load(CONF / "hydra" / "default.yaml").job.config.override_dirname.exclude_keys
    config_keys = flatten_config(OmegaConf.to_container(_train_config(), resolve=False))
    expected = identity.sweep_folder_excluded_keys(config_keys)
    assert sorted(listed) == sorted(expected), (
        "conf/hydra/default.yaml's exclude_keys differ from cnnlab/runs/identity.py; list these:\n"
        + "\n".join(f"        - {key}" for key in expected)
    )
    assert not any(identity.defines_the_run(key) for key in listed)
    # what a job's folder is named after, composed by Hydra itself
    overrides = ["model=mlp", "seed=1", "logger=csv", "data.root=/d", "data.num_workers=0", "resume=true"]
    named = _train_config([*overrides, "callbacks.step_checkpoint.every_n_train_steps=5"], hydra=True)
    assert named.hydra.job.override_dirname == "model=mlp,seed=1"


def _fake_run(root: Path, name: str, acc: float, seed: int, overrides: list[str]) -> None:
    run_dir = root / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    record = {
        "status": "completed", "model": "mlp", "dataset": "mnist", "seed": seed, "test_acc": acc,
        "test_f1_macro": acc, "best_val_acc": acc, "params": 10, "epochs": 1, "overrides": overrides,
    }  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(record))


def test_results_rows_group_runs_that_differ_only_where_and_how_they_ran(tmp_path: Path) -> None:
    from cnnlab.results.rows import find_runs, summarize

    base = ["model=mlp", "data=mnist"]
    _fake_run(tmp_path, "a", 0.5, 0, [*base, "seed=0", "logger=csv", "data.root=/a"])
    _fake_run(tmp_path, "b", 0.7, 1, [*base, "seed=1", "logger=tensorboard", "deterministic=true"])
    _fake_run(tmp_path, "c", 0.6, 2, [*base, "seed=2", "evaluate=false", "resume=true"])
    _fake_run(tmp_path, "d", 0.9, 0, [*base, "seed=0", "optimizer.lr=0.01"])
    rows = sorted(summarize(find_runs([tmp_path])), key=lambda row: row["runs"])
    assert [(row["runs"], row["config"]) for row in rows] == [(1, "optimizer.lr=0.01"), (3, "")]
    assert rows[1]["seeds"] == "0, 1, 2" and rows[1]["test_acc_mean"] == pytest.approx(0.6)


def test_hparams_columns_are_the_overrides_that_define_the_run() -> None:
    from cnnlab.runs.record import hparams

    config = {"model": {"_target_": "x.MLP"}, "seed": 3, "data": {"name": "mnist", "fold": 2}}
    overrides = ["seed=3", "data.fold=2", "resume=true", "logger=csv", "data.num_workers=0", "evaluate=false"]
    columns = hparams(config, {}, overrides)
    assert columns["seed"] == 3 and columns["data.fold"] == 2
    assert not {"resume", "logger", "data.num_workers", "evaluate"} & columns.keys()


def test_a_sweep_over_where_jobs_ran_varies_no_hparams_column(tmp_path: Path) -> None:
    from cnnlab.loggers import swept_hparams

    job_dir = tmp_path / "sweep" / "0"
    (job_dir / ".hydra").mkdir(parents=True)
    hydra = {"mode": "MULTIRUN", "sweeper": {"params": None}, "runtime": {"output_dir": str(job_dir)}}
    OmegaConf.save({"hydra": {**hydra, "overrides": {"task": []}}}, job_dir / ".hydra/hydra.yaml")
    command_line = ["seed=0,1", "data.num_workers=0,4", "logger=csv,tensorboard"]
    OmegaConf.save(
        {"hydra": {**hydra, "overrides": {"task": command_line}}}, job_dir.parent / "multirun.yaml"
    )
    assert swept_hparams(job_dir) == {"seed"}


def test_resume_drift_ignores_what_does_not_define_the_run(caplog) -> None:
    from cnnlab.runs.resume import _warn_config_drift, config_drift

    saved = {
        "seed": 0, "optimizer": {"lr": 0.1}, "data": {"root": "/old", "num_workers": 4},
        "logger": {"csv": {"_target_": "cnnlab.loggers.CSVLogger"}}, "deterministic": False,
        "paths": {"output_dir": "/runs/a"}, "ckpt_path": None,
    }  # fmt: skip
    moved = {
        "seed": 0, "optimizer": {"lr": 0.1}, "data": {"root": "/new", "num_workers": 0},
        "logger": {"tensorboard": {"_target_": "cnnlab.loggers.TensorBoardLogger"}}, "deterministic": True,
        "paths": {"output_dir": "/runs/b"}, "ckpt_path": "/runs/b/checkpoints/last.ckpt",
    }  # fmt: skip
    assert config_drift(saved, moved) == []
    with caplog.at_level("WARNING"):
        _warn_config_drift(saved, OmegaConf.create(moved))
    assert "differ" not in caplog.text
    changed = {**moved, "seed": 1, "optimizer": {"lr": 0.2}}
    assert config_drift(saved, changed) == ["optimizer.lr", "seed"]


def test_resume_skips_a_finished_run_whatever_its_location(tmp_path: Path, monkeypatch) -> None:
    from cnnlab.runs import resume

    record = {"status": "completed", "overrides": ["model=mlp", "seed=0", "data.root=/old"], "max_epochs": 2}
    (tmp_path / "metrics.json").write_text(json.dumps(record))
    cfg = OmegaConf.create({"resume": True, "ckpt_path": None, "trainer": {"max_epochs": 2}})
    now = ["model=mlp", "seed=0", "data.root=/new", "logger=csv", "resume=true"]
    monkeypatch.setattr(resume, "_task_overrides", lambda: now)
    assert resume.finished_record(cfg, tmp_path)["overrides"] == record["overrides"]  # skipped: done
    monkeypatch.setattr(resume, "_task_overrides", lambda: ["model=mlp", "seed=1", "resume=true"])
    with pytest.raises(resume.RunDirectoryError, match="other overrides"):
        resume.finished_record(cfg, tmp_path)


def test_resume_of_a_run_directory_keeps_its_location_and_restarts_its_continuation(tmp_path: Path) -> None:
    from cnnlab.runs.resume import resume_argv

    (tmp_path / ".hydra").mkdir()
    saved = ["model=mlp", "data.root=/d", "ckpt_path=/x/last.ckpt", "resume=true", "seed=2"]
    (tmp_path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in saved))
    argv = resume_argv(["train", f"resume={tmp_path}", "trainer.max_epochs=5"])
    assert argv[1:4] == ["model=mlp", "data.root=/d", "seed=2"]
    assert argv[4:] == ["trainer.max_epochs=5", f"hydra.run.dir='{tmp_path.resolve()}'", "resume=true"]


def test_reference_doc_commands_hold_what_defines_the_run(tmp_path: Path) -> None:
    from cnnlab.results.reference_doc import _commands
    from cnnlab.results.rows import find_runs

    overrides = ["model=mlp", "seed=1", "data.root=/d", "logger=csv", "hydra.run.dir=x", "resume=True"]
    _fake_run(tmp_path, "mlp-seed1", 0.5, 1, overrides)
    assert "`python -m train model=mlp seed=1`" in _commands(find_runs([tmp_path]), tmp_path)


def test_a_suites_evaluation_takes_only_where_the_data_is(monkeypatch) -> None:
    from cnnlab_bench import suite

    given = ["suite=gpu", "data.root=/d", "data.download=true", "data.num_workers=0", "model=mlp"]
    monkeypatch.setattr(suite, "task_overrides", lambda: given)
    assert suite.forwarded("evaluate") == ["data.root=/d", "data.download=true"]
    assert suite.forwarded("train") == given[1:]


def test_resume_of_a_run_directory_keeps_its_step_checkpoints_and_preemption_settings(tmp_path: Path) -> None:
    from cnnlab.runs.resume import resume_argv

    (tmp_path / ".hydra").mkdir()
    guards = ["callbacks.step_checkpoint.every_n_train_steps=500", "callbacks.preemption.requeue=false"]
    saved = ["model=mlp", *guards, "ckpt_path=last"]
    (tmp_path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in saved))
    argv = resume_argv(["train", f"resume={tmp_path}"])
    assert argv[1:4] == ["model=mlp", *guards]  # as the same command with ckpt_path=last would run
    assert argv[4:] == [f"hydra.run.dir='{tmp_path.resolve()}'", "resume=true"]
