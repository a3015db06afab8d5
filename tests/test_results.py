"""`python -m results` over a fake multirun directory: seeds averaged, failures listed, grouping, sorting."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cnnlab.results.rows import find_runs
from cnnlab.results.table import results_table
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
    from cnnlab.results.rows import Run, summarize
    from cnnlab.results.table import markdown

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


# --- comparisons with a baseline -------------------------------------------------------------------

BN_ACC = {True: [0.842, 0.851, 0.838], False: [0.801, 0.823, 0.779]}  # hand-made, seeds 0, 1, 2


def ablation_run(root: Path, job: int, acc: float, seed: int, batch_norm: bool, dropout: float) -> None:
    overrides = ["experiment=ablation_bn", f"model.batch_norm={str(batch_norm).lower()}", f"seed={seed}"]
    overrides += [f"model.dropout={dropout}"] if dropout else []
    run_dir = fake_run(root, str(job), record("smallcnn", acc, seed, test_f1_macro=acc - 0.02), overrides)
    config = f"seed: {seed}\nmodel:\n  batch_norm: {str(batch_norm).lower()}\n  dropout: {dropout}\n"
    (run_dir / ".hydra" / "config.yaml").write_text(config)


@pytest.fixture
def ablation(tmp_path: Path) -> Path:
    """A BN ablation sweep (3 seeds each), a dropout variant with other seeds, and one single run."""
    root = tmp_path / "multirun" / "ablation_bn"
    job = iter(range(100))
    for batch_norm, accuracies in BN_ACC.items():
        for seed, acc in enumerate(accuracies):
            ablation_run(root, next(job), acc, seed, batch_norm, 0.0)
    for seed, acc in zip((5, 6, 7), (0.805, 0.83, 0.79), strict=True):
        ablation_run(root, next(job), acc, seed, False, 0.3)
    ablation_run(root, next(job), 0.7, 0, False, 0.5)
    return root


def completed_rows(folder: Path) -> list[dict[str, str]]:
    return [row for row in csv.DictReader((folder / "results.csv").open()) if row["status"] == "completed"]


def test_baseline_comparison_matches_scipy(ablation: Path) -> None:
    from scipy import stats

    text, out = results_table([ablation], baseline=["model.batch_norm=true"])
    rows = {row["config"]: row for row in completed_rows(out)}
    base, no_bn = (
        rows["experiment=ablation_bn model.batch_norm=true"],
        rows["experiment=ablation_bn model.batch_norm=false"],
    )
    assert base["verdict"] == "baseline" and float(base["delta_test_acc"]) == 0.0
    welch = stats.ttest_ind(BN_ACC[False], BN_ACC[True], equal_var=False)
    interval = welch.confidence_interval(0.95)
    assert float(no_bn["delta_test_acc"]) == pytest.approx(np.mean(BN_ACC[False]) - np.mean(BN_ACC[True]))
    assert float(no_bn["delta_ci95_low"]) == pytest.approx(interval.low)
    assert float(no_bn["delta_ci95_high"]) == pytest.approx(interval.high)
    assert float(no_bn["p_value"]) == pytest.approx(welch.pvalue)
    # the same seeds 0, 1, 2: the paired test is offered beside Welch's, which the verdict reads by default
    paired = stats.ttest_rel(BN_ACC[False], BN_ACC[True])
    assert float(no_bn["p_paired"]) == pytest.approx(paired.pvalue) and no_bn["test"].startswith("Welch t")
    assert float(no_bn["paired_ci95_low"]) == pytest.approx(paired.confidence_interval(0.95).low)
    # its own mean's 95 % CI
    own = stats.t.interval(0.95, 2, loc=np.mean(BN_ACC[False]), scale=stats.sem(BN_ACC[False]))
    assert (float(no_bn["test_acc_ci95_low"]), float(no_bn["test_acc_ci95_high"])) == pytest.approx(own)
    # other seeds: Welch only, no paired p
    dropout = rows["experiment=ablation_bn model.batch_norm=false model.dropout=0.3"]
    assert dropout["test"].startswith("Welch t") and dropout["p_paired"] == ""
    # Holm over the two tested rows (the single run has no test)
    tested = sorted(
        [(float(no_bn["p_value"]), no_bn), (float(dropout["p_value"]), dropout)], key=lambda t: t[0]
    )
    assert float(tested[0][1]["p_holm"]) == pytest.approx(min(1.0, 2 * tested[0][0]))
    assert float(tested[1][1]["p_holm"]) == pytest.approx(max(float(tested[0][1]["p_holm"]), tested[1][0]))
    expected = "worse" if float(no_bn["p_holm"]) < 0.05 else "no detectable difference at n=3"
    assert no_bn["verdict"] == expected
    single = rows["experiment=ablation_bn model.batch_norm=false model.dropout=0.5"]
    assert single["verdict"].startswith("no test: 1 run") and single["p_value"] == ""
    # macro-F1 gets its comparison too
    f1 = stats.ttest_ind(np.array(BN_ACC[False]) - 0.02, np.array(BN_ACC[True]) - 0.02, equal_var=False)
    assert float(no_bn["p_value_f1"]) == pytest.approx(f1.pvalue)
    assert "Against the baseline `model.batch_norm=true`" in text and "Holm-adjusted over the 2" in text
    assert (out / "results.md").read_text() == text
    # --test paired: the verdict reads the paired test where the seeds match, Welch's elsewhere
    _, out = results_table([ablation], baseline=["model.batch_norm=true"], test="paired")
    rows = {row["config"]: row for row in completed_rows(out)}
    no_bn = rows["experiment=ablation_bn model.batch_norm=false"]
    assert no_bn["test"] == "paired t (3 shared seeds/folds)"
    assert rows["experiment=ablation_bn model.batch_norm=false model.dropout=0.3"]["test"].startswith("Welch")
    p_other = float(rows["experiment=ablation_bn model.batch_norm=false model.dropout=0.3"]["p_value"])
    assert float(no_bn["p_holm"]) == pytest.approx(
        min(1.0, max(2 * min(paired.pvalue, p_other), paired.pvalue))
    )


def test_baseline_by_group_choice_and_verdicts(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for seed in range(3):
        fake_run(root, f"mlp{seed}", record("mlp", 0.50 + 0.001 * seed, seed), ["model=mlp", f"seed={seed}"])
        fake_run(
            root,
            f"cnn{seed}",
            record("smallcnn", 0.90 - 0.002 * seed, seed),
            ["model=smallcnn", f"seed={seed}"],
        )
    _, out = results_table([root], baseline=["model=mlp"])
    rows = {row["model"]: row for row in completed_rows(out)}
    assert rows["mlp"]["verdict"] == "baseline" and rows["smallcnn"]["verdict"] == "better"
    _, out = results_table([root], baseline=["model=smallcnn"])
    assert {row["model"]: row["verdict"] for row in completed_rows(out)}["mlp"] == "worse"


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        (["model.batch_norm=maybe"], "matches no row: the rows differ in model.batch_norm, model.dropout"),
        (
            ["model=smallcnn"],
            "matches 4 rows: the rows differ in model.batch_norm, model.dropout; add another",
        ),
        (["model.batch_norm=false"], "matches 3 rows: the rows differ in model.dropout; add another"),
        (["batch_norm"], "use KEY=VALUE"),
    ],
)
def test_baseline_matching_no_row_or_several_is_one_line(
    ablation: Path, capsys, baseline: list[str], message: str
) -> None:
    import results

    with pytest.raises(SystemExit) as exit_info:
        results.main([str(ablation), *(arg for b in baseline for arg in ("--baseline", b))])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1 and message in error


def test_baseline_narrowed_by_a_second_key_read_from_the_saved_config(ablation: Path) -> None:
    # model.dropout=0.0 is no override of the plain runs: it is read from their .hydra/config.yaml
    _, out = results_table([ablation], baseline=["model.batch_norm=false", "model.dropout=0"])
    verdicts = {row["config"]: row["verdict"] for row in completed_rows(out)}
    assert verdicts["experiment=ablation_bn model.batch_norm=false"] == "baseline"
    assert verdicts["experiment=ablation_bn model.batch_norm=true"] != "baseline"


def test_sort_accepts_a_descending_column_after_a_space(multirun: Path, capsys) -> None:
    import results

    results.main([str(multirun), "--sort", "-test_acc", "--by", "model,dataset"])
    printed = capsys.readouterr().out
    assert printed.index("| hog_svm") < printed.index("| mlp")
    done = completed_rows(multirun)
    means = [float(row["test_acc_mean"]) for row in done]
    assert means == sorted(means, reverse=True) and len(means) == 2
    assert results.attach_dash_values(["d", "--sort", "-a,b", "--by", "model"]) == [
        "d",
        "--sort=-a,b",
        "--by",
        "model",
    ]


# --- validation curves ----------------------------------------------------------------------------


def write_metrics_csv(run_dir: Path, val_acc: list[float], val_loss: list[float]) -> None:
    """A Lightning CSVLogger file: train rows per step, one validation row per epoch (0-based)."""
    lines = ["epoch,step,train/loss,val/acc,val/loss"]
    for epoch, (acc, loss) in enumerate(zip(val_acc, val_loss, strict=True)):
        lines += [f"{epoch},{10 * epoch + 4},2.0,,", f"{epoch},{10 * epoch + 9},,{acc},{loss}"]
    (run_dir / "csv").mkdir(parents=True)
    (run_dir / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_curves_png_holds_one_line_per_row_with_its_band(ablation: Path) -> None:
    from PIL import Image

    from cnnlab.results.curves import read_validation_curves, row_curve
    from cnnlab.results.rows import summarize

    curves = {}
    for run_dir in sorted(ablation.iterdir()):
        if run_dir.name in ("6", "7", "8", "9"):
            continue  # the dropout rows were logged to TensorBoard only
        offset = 0.01 * int(run_dir.name)
        acc = [0.3 + offset, 0.5 + offset, 0.6 + offset]
        write_metrics_csv(run_dir, acc, [2.0 - a for a in acc])
        curves[run_dir.name] = acc
    read = read_validation_curves(ablation / "1" / "csv" / "metrics.csv")
    assert read["val/acc"] == pytest.approx({1: 0.31, 2: 0.51, 3: 0.61}) and read["val/loss"][
        1
    ] == pytest.approx(1.69)
    logged = [read_validation_curves(ablation / job / "csv" / "metrics.csv")["val/acc"] for job in "012"]
    epochs, mean, low, high = row_curve(logged, "minmax")
    assert list(epochs) == [1, 2, 3]
    assert mean == pytest.approx(np.mean([curves[j] for j in "012"], axis=0))
    assert low == pytest.approx(curves["0"]) and high == pytest.approx(curves["2"])
    _, _, low_std, high_std = row_curve([{1: 0.3}, {1: 0.5}], "std")
    assert (high_std - low_std)[0] == pytest.approx(2 * np.std([0.3, 0.5], ddof=1))

    text, out = results_table([ablation], curves=True, baseline=["model.batch_norm=true"])
    with Image.open(out / "curves.png") as image:
        assert image.width >= 1000 and image.height >= 400
    assert "4 runs without csv/metrics.csv left out" in text
    assert len(summarize(find_runs([ablation]))) == 4


def test_one_epoch_curves_are_points_on_a_whole_epoch_axis(multirun: Path) -> None:
    """1-epoch runs drew single dots on matplotlib's 0.96-1.04 epoch axis."""
    from cnnlab.results.curves import SINGLE_MARKER_SIZE, row_curves_figure
    from cnnlab.results.rows import summarize

    for job, acc in zip("0123", (0.5, 0.6, 0.7, 0.9), strict=True):  # mlp seeds 0-2, and mlp lr 0.01
        write_metrics_csv(multirun / job, [acc], [2.0 - acc])
    figure, _ = row_curves_figure(summarize(find_runs([multirun])))
    acc_ax, loss_ax = figure.axes
    for ax in (acc_ax, loss_ax):
        assert ax.get_xlim() == pytest.approx((0.5, 1.5))  # epoch 1 in the middle
        assert [tick for tick in ax.get_xticks() if 0.5 <= tick <= 1.5] == [1]  # one whole-epoch tick
    # each row one large point with its min-max bar, and its value written beside it
    points = [line for line in acc_ax.get_lines() if line.get_marker() == "o"]
    assert len(points) == 2 and all(line.get_markersize() >= SINGLE_MARKER_SIZE for line in points)
    assert sorted(text.get_text() for text in acc_ax.texts) == ["0.600", "0.900"]
    bars = [segment[:, 1].tolist() for bar in acc_ax.collections for segment in bar.get_segments()]
    assert [0.5, 0.7] in [pytest.approx(bar) for bar in bars]  # the 3 seeds' min and max
    assert "only epoch" in figure.get_suptitle()


def test_curves_of_several_epochs_keep_lines_on_whole_epochs(multirun: Path) -> None:
    from cnnlab.results.curves import row_curves_figure
    from cnnlab.results.rows import summarize

    for job in "012":
        write_metrics_csv(multirun / job, [0.3, 0.5, 0.6], [1.7, 1.5, 1.4])
    figure, missing = row_curves_figure(summarize(find_runs([multirun])))
    acc_ax = figure.axes[0]
    assert acc_ax.get_xlim() == pytest.approx((0.5, 3.5))
    assert [tick for tick in acc_ax.get_xticks() if 0.5 <= tick <= 3.5] == [1, 2, 3]
    (line,) = [line for line in acc_ax.get_lines() if len(line.get_xdata()) == 3]
    assert line.get_markersize() < 8 and not acc_ax.texts  # a line: no value labels
    assert "only epoch" not in figure.get_suptitle() and len(missing) == 2  # mlp lr 0.01 and hog_svm


def test_a_runs_learning_curves_say_when_no_learning_rate_was_logged(tmp_path: Path, monkeypatch) -> None:
    """eval/learning_curves.png of a run shorter than trainer.log_every_n_steps: the LR panel was an empty
    0-1 axis, read as a learning rate of 0."""
    from cnnlab.analysis import curves

    drawn = []
    monkeypatch.setattr(curves, "save", lambda figure, path: drawn.append(figure) or path)
    one_epoch = curves.History(train_loss=[2.2], train_acc=[0.3], val_loss=[2.0], val_acc=[0.6])
    curves.plot_curves(one_epoch, curves.diagnose_fit(one_epoch), tmp_path / "curves.png")
    loss_ax, _, lr_ax = drawn[0].axes
    assert "no learning rate logged" in lr_ax.texts[0].get_text() and not lr_ax.get_yticks().size
    assert loss_ax.get_xlim() == pytest.approx((-0.2, 1.2))  # the start and the end of the one epoch


def test_curves_without_any_csv_log_is_one_line(multirun: Path, capsys) -> None:
    import results

    with pytest.raises(SystemExit):
        results.main([str(multirun), "--curves"])
    assert "no run has csv/metrics.csv; train with logger=default or logger=csv" in capsys.readouterr().err


def test_a_single_run_baseline_tests_nothing_and_says_why(ablation: Path) -> None:
    _, out = results_table([ablation], baseline=["model.dropout=0.5"])
    verdicts = [row["verdict"] for row in completed_rows(out) if row["verdict"] != "baseline"]
    assert verdicts == ["no test: the baseline has 1 run (add seeds)"] * 3
    assert all(row["p_holm"] == "" and row["delta_test_acc"] != "" for row in completed_rows(out))


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
