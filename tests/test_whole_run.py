"""The whole-run comparison: the plain script trains the same model, and both sides are timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab_bench import plain_script, whole_run


def test_plain_script_trains_and_tests_smallcnn(tiny_data: Path) -> None:
    result = plain_script.main(["--data=mnist", f"--root={tiny_data}", "--val-size=40", "--batch-size=32"])
    assert 0.0 <= result["test_acc"] <= 1.0
    assert 0 < result["train_time_s"] <= result["wall_in_process_s"]


@pytest.mark.slow
def test_comparison_times_both_sides_and_reports_their_ratio(tiny_data: Path, tmp_path: Path, capsys) -> None:
    train_args = [f"data.root={tiny_data}", "data.val_size=40", "data.batch_size=32", "evaluate=false"]
    script_args = [f"--root={tiny_data}", "--val-size=40", "--batch-size=32"]
    result = whole_run.compare("mnist", 1, tmp_path, train_args, script_args)
    # the ratio comes from the unrounded walls; the record keeps them to 0.1 s
    framework, script = result["framework_wall_s"][0], result["script_wall_s"][0]
    low, high = (framework - 0.05) / (script + 0.05), (framework + 0.05) / (script - 0.05)
    assert low - 0.001 <= result["ratio"] <= high + 0.001  # and the ratio to 3 decimals
    assert (tmp_path / "mnist-0" / "metrics.json").is_file()
    assert "| mnist |" in whole_run.table([result])
    progress = capsys.readouterr().out  # each run's wall as it ends: a comparison on a busy machine is long
    for side in ("framework", "script"):
        assert f"mnist, {side}, run 1 of 1: {result[f'{side}_wall_s'][0]:.1f} s" in progress


def test_a_failing_side_stops_the_comparison_with_its_error(tiny_data: Path, tmp_path: Path, capsys) -> None:
    # with the data present, the unknown loader is what stops python -m train
    bad_loader = [f"data.root={tiny_data}", "data.loader=dataloader"]
    with pytest.raises(SystemExit) as stopped:
        whole_run.main(["--data=mnist", "--repeats=1", f"--out={tmp_path / 'out'}", *bad_loader])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "data.loader='dataloader' is unknown" in err[0]
