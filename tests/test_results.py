"""`python -m results` over a fake multirun directory: seeds averaged, failures listed, grouping, sorting."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cnnlab.results import find_runs, results_table
from tests.conftest import REPO, run_cli


def fake_run(root: Path, name: str, record: dict | None, overrides: list[str]) -> Path:
    run_dir = root / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if record is not None:
        (run_dir / "metrics.json").write_text(json.dumps({"overrides": overrides, **record}))
    return run_dir


def record(model: str, acc: float, seed: int, **extra) -> dict:
    return {
        "status": "completed", "model": model, "dataset": "mnist", "seed": seed, "test_acc": acc,
        "test_f1_macro": acc - 0.01, "best_val_acc": acc + 0.01, "params": 1000,
        "train_time_s": 10.0 * (seed + 1), "device": "cpu (2 cores)", "epochs": 2, **extra,
    }  # fmt: skip


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    root = tmp_path / "multirun" / "2026-01-01_00-00-00"
    for job, (acc, seed) in enumerate([(0.5, 0), (0.6, 1), (0.7, 2)]):
        fake_run(root, str(job), record("mlp", acc, seed), ["model=mlp", f"seed={seed}", "data=mnist"])
    fake_run(root, "3", record("mlp", 0.9, 0), ["model=mlp", "seed=0", "data=mnist", "optimizer.lr=0.01"])
    fake_run(root, "4", record("hog_svm", 0.8, 0, features="hog", epochs=None), ["model=hog_svm", "seed=0"])
    failed = {"status": "failed", "model": "smallvgg", "dataset": "mnist", "error": "CUDA out of memory"}
    fake_run(root, "5", failed, ["model=smallvgg", "seed=0"])
    fake_run(root, "6", None, ["model=smallcnn", "seed=0"])  # killed before writing its record
    return root


def test_seeds_of_one_configuration_are_averaged_and_problems_listed(multirun: Path) -> None:
    text, out = results_table([multirun])
    assert out == multirun.resolve()
    rows = list(csv.DictReader((out / "results.csv").open()))
    by_status = {row["status"] for row in rows}
    assert by_status == {"completed", "failed", "incomplete"}
    done = [row for row in rows if row["status"] == "completed"]
    assert len(done) == 3  # mlp (3 seeds), mlp with another lr, hog_svm
    seeds = next(row for row in done if row["model"] == "mlp" and row["runs"] == "3")
    assert float(seeds["test_acc_mean"]) == pytest.approx(0.6)
    assert float(seeds["test_acc_std"]) == pytest.approx(0.1)  # sample std of 0.5, 0.6, 0.7
    assert float(seeds["train_time_s_mean"]) == pytest.approx(20.0) and seeds["seeds"] == "0, 1, 2"
    other = next(row for row in done if row["model"] == "mlp" and row["runs"] == "1")
    assert other["config"] == "optimizer.lr=0.01" and other["test_acc_std"] == ""
    assert next(row for row in done if row["model"] == "hog_svm")["features"] == "hog"
    failed = next(row for row in rows if row["status"] == "failed")
    assert failed["error"] == "CUDA out of memory" and failed["model"] == "smallvgg"
    incomplete = next(row for row in rows if row["status"] == "incomplete")
    assert incomplete["run_dirs"].endswith("6") and "model=smallcnn" in incomplete["config"]
    assert "0.6000 ± 0.1000" in text and "CUDA out of memory" in text and "incomplete" in text
    assert (out / "results.md").read_text() == text


def test_by_merges_configurations_and_sort_orders_rows(multirun: Path, tmp_path: Path) -> None:
    results_table([multirun], by=["model", "dataset"], sort=["-test_acc"], out_dir=tmp_path / "table")
    done = [
        row
        for row in csv.DictReader((tmp_path / "table" / "results.csv").open())
        if row["status"] == "completed"
    ]
    assert [row["model"] for row in done] == ["hog_svm", "mlp"]  # 0.8 > mean(0.5, 0.6, 0.7, 0.9)
    assert done[1]["runs"] == "4" and float(done[1]["test_acc_mean"]) == pytest.approx(0.675)


def test_find_runs_treats_a_hydra_folder_without_record_as_incomplete(multirun: Path) -> None:
    statuses = sorted(run.status for run in find_runs([multirun / "6", multirun / "0"]))
    assert statuses == ["completed", "incomplete"]


def test_cli_writes_the_table(multirun: Path) -> None:
    done = run_cli(["-m", "results", str(multirun), "--by", "model,dataset"], cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "| hog_svm | mnist | hog |" in done.stdout and (multirun / "results.md").is_file()


@pytest.mark.parametrize(
    ("args", "message"), [(["nope"], "nope is not a directory"), (["--by", "colour"], "--by colour: unknown")]
)
def test_cli_rejects_bad_input_in_one_line(multirun: Path, capsys, args: list[str], message: str) -> None:
    import results

    argv = [str(multirun.parent / a) if a == "nope" else a for a in args]
    if argv[0].startswith("--"):
        argv.insert(0, str(multirun))
    with pytest.raises(SystemExit) as exit_info:
        results.main(argv)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("error:") and message in error


def test_reference_table_sweeps_every_model_and_tabulates(
    tiny_data: Path, tmp_path: Path, monkeypatch
) -> None:
    from tests.conftest import TINY, run_entry

    sweep_dir = tmp_path / "multirun"
    args = ["--multirun", "experiment=reference_table", "data=mnist", f"data.root={tiny_data}", *TINY]
    args += [f"hydra.sweep.dir={sweep_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    run_entry("train", args, monkeypatch)
    text, _ = results_table([sweep_dir])
    rows = [row for row in csv.DictReader((sweep_dir / "results.csv").open())]
    assert {row["model"] for row in rows} == {
        "hog_svm",
        "mlp",
        "smallcnn",
        "smallvgg",
        "resnet18",
    }  # the course's
    assert all(row["status"] == "completed" and row["dataset"] == "mnist" for row in rows)
    assert "experiment=reference_table" in text


def test_optional_columns_appear_when_runs_have_them() -> None:
    from cnnlab.results import Run, markdown, summarize

    def run(seed: int, epochs: int | None) -> Run:
        record = {
            "status": "completed",
            "model": "smallcnn",
            "dataset": "mnist",
            "seed": seed,
            "test_acc": 0.9,
            "test_f1_macro": 0.9,
            "best_val_acc": 0.9,
            "params": 10,
            "epochs": 3,
            "epochs_to_val_acc": epochs,
            "overrides": [f"seed={seed}"],
        }
        return Run(path=Path(f"/runs/{seed}"), record=record, status="completed")

    rows = summarize([run(0, 2), run(1, 4), run(2, None)])
    text = markdown(rows, [], by=("model", "dataset"))
    assert "epochs to val target" in text and "3.0 ± 1.4 (2/3 runs)" in text
    assert "TTA top-1" not in text


def test_a_debug_run_is_listed_apart_never_as_a_result(
    train_run, tmp_path: Path, monkeypatch, capsys
) -> None:
    from cnnlab.runs.record import read_run_record
    from tests.conftest import run_entry

    real = train_run("model=mlp", "data=mnist", run_dir=tmp_path / "runs" / "real")
    debug = train_run("model=mlp", "data=mnist", "debug=fdr", run_dir=tmp_path / "runs" / "fdr")
    assert real["status"] == "completed" and real["debug"] is None
    assert debug["status"] == "debug" and debug["debug"] == "debug=fdr"
    assert "debug run (debug=fdr), not a result" in capsys.readouterr().out
    assert read_run_record(tmp_path / "runs" / "fdr")["status"] == "debug"

    run_entry("results", [str(tmp_path / "runs")], monkeypatch)
    table, listed = capsys.readouterr().out.split("Failed, incomplete or debug runs")
    assert "1 finished runs in 1 rows" in table
    assert "debug=fdr: a debug run, not a result" in listed and "fdr" in listed and "real" not in listed


def test_a_partial_test_set_is_recorded_and_flagged(train_run, tmp_path: Path, monkeypatch, capsys) -> None:
    from tests.conftest import run_entry

    full = train_run("model=mlp", "data=mnist", run_dir=tmp_path / "runs" / "full")
    part = train_run(
        "model=mlp", "data=mnist", "+trainer.limit_test_batches=0.5", run_dir=tmp_path / "runs" / "part"
    )
    assert (full["test_images"], full["test_set_images"]) == (100, 100)
    assert (part["test_images"], part["test_set_images"]) == (64, 100)  # 2 of the 4 batches of 32
    capsys.readouterr()
    run_entry("results", [str(tmp_path / "runs")], monkeypatch)
    text = capsys.readouterr().out
    marked = [line for line in text.splitlines() if line.startswith("| mlp") and "†" in line]
    assert len(marked) == 1 and "1 run(s) of the marked rows tested only part of the test set" in text
