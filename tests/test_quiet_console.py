"""A normal run and its resume print each thing once, and no library noise a user cannot act on."""

from __future__ import annotations

import logging
from pathlib import Path

from cnnlab.data import readers
from tests.conftest import run_entry, tiny_train_args

MLP = ["model=mlp", "data=mnist", "evaluate=true", "logger=csv"]


def test_a_run_and_its_resume_print_each_line_once(
    tiny_data: Path, tmp_path: Path, monkeypatch, capsys, recwarn
):
    run_dir = tmp_path / "run"
    run_entry("train", tiny_train_args(run_dir, tiny_data, *MLP), monkeypatch)
    out = capsys.readouterr().out
    log = (run_dir / "train.log").read_text()
    for text in (out, log):
        # training tests, then the evaluation reads the test files again: said once
        assert text.count("MNIST test files read from") == 1, text
        # the three views an MLP cannot have, in one line
        assert text.count("skipped: MLP has no convolution layer") == 1, text
    assert "filters.png, feature_maps.png and class_evidence.png skipped: MLP has no convolution" in out

    run_entry("train", [f"resume={run_dir}", "trainer.max_epochs=2"], monkeypatch)
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)]
    shown = capsys.readouterr()
    assert "exists and is not empty" not in shown.err
    # the run's own resume line says where it continues; Lightning's adds nothing
    log = (run_dir / "train.log").read_text()
    assert "resuming from" in log and "Restored all states" not in log + shown.out + shown.err


def test_where_a_split_was_read_from_is_said_once_per_run_log(tmp_path: Path, monkeypatch, caplog) -> None:
    root = logging.getLogger()  # without the run logs an earlier test's Hydra run left attached
    monkeypatch.setattr(
        root, "handlers", [h for h in root.handlers if not isinstance(h, logging.FileHandler)]
    )

    def read_twice(log_file: Path | None) -> list[str]:
        handler = logging.FileHandler(log_file) if log_file else None
        if handler:
            root.addHandler(handler)
        caplog.clear()
        try:
            with caplog.at_level(logging.INFO, logger="cnnlab.data.readers"):
                for _ in range(2):
                    readers._read_from("MNIST", False, tmp_path)
        finally:
            if handler:
                root.removeHandler(handler)
                handler.close()
        return [record.getMessage() for record in caplog.records]

    said = [f"MNIST test files read from {tmp_path}"]
    assert read_twice(tmp_path / "a.log") == said
    assert read_twice(tmp_path / "b.log") == said  # a sweep's next job: its own log says it again
    assert read_twice(None) == said * 2  # no run log (a script): every read is reported
