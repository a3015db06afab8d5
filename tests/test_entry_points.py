"""The entry points resolve a run directory to its checkpoint once and hand that file on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_entry

# (entry point, the module and function it hands the checkpoint to, its other arguments)
ENTRIES = [
    ("evaluate", "cnnlab.analysis.evaluation", "evaluate_checkpoint", []),
    ("predict", "cnnlab.analysis.prediction", "predict", ["image=unused.png"]),
    ("export", "cnnlab.analysis.export", "export_checkpoint", ["format=torchscript"]),
]


@pytest.mark.parametrize(("entry", "module", "function", "args"), ENTRIES)
def test_a_run_directory_is_resolved_once_and_its_checkpoint_handed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, module: str, function: str, args: list[str]
) -> None:
    import importlib

    from cnnlab.runs import record

    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run_dir / "metrics.json").write_text(json.dumps({"status": "preempted"}))  # names no best checkpoint
    looked_up, handed = [], []
    lookup = record._checkpoint_of_run
    monkeypatch.setattr(record, "_checkpoint_of_run", lambda path: looked_up.append(path) or lookup(path))

    def handed_on(checkpoint: Path, *_: object, **__: object) -> dict:
        handed.append(checkpoint)
        return {}

    monkeypatch.setattr(importlib.import_module(module), function, handed_on)
    if entry == "export":
        args = [*args, f"out={tmp_path / 'model.pt'}"]
    run_entry(entry, [f"ckpt_path={run_dir}", *args], monkeypatch)
    assert looked_up == [run_dir]  # one look at the record, one "names no best checkpoint" line
    assert handed == [run_dir / "checkpoints" / "last.ckpt"]
