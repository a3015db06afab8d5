from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# pytest-xdist (`-n auto` in pyproject.toml) runs one worker per core: each worker, and every entry point
# it starts as a subprocess, gets its share of the cores instead of all of them (set before torch loads)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

import pytest  # noqa: E402

from cnnlab.runs.record import read_run_record  # noqa: E402
from tests.datasets import write_all  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# Small, fast overrides for every test run through the entry point.
TINY = [
    "data.num_workers=0",
    "data.val_size=40",
    "data.batch_size=32",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "logger=csv",
    # the checkpoint analysis after training has its own tests (tests/test_evaluate.py)
    "evaluate=false",
]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with tiny CIFAR-10 / MNIST / Fashion-MNIST files in the real formats."""
    return write_all(tmp_path_factory.mktemp("data"))


def run_entry(module: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``python -m <module> <args>`` in this process (saves the torch import per run)."""
    entry = __import__(module)
    monkeypatch.setattr(sys, "argv", [module, *args])
    entry.main()


@pytest.fixture
def train_run(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., dict[str, Any]]:
    """Train through the real entry point on the tiny data; returns the run record."""
    counter = iter(range(1000))

    def run(*overrides: str, run_dir: Path | None = None) -> dict[str, Any]:
        run_dir = run_dir or tmp_path / f"run{next(counter)}"
        args = [f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", *TINY, *overrides]
        run_entry("train", args, monkeypatch)
        return read_run_record(run_dir)

    return run


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python <args>`` in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )


def job_dir(sweep: Path, number: int) -> Path:
    """A sweep job's folder: named by its number and its overrides (``0_model-mlp+seed-0``)."""
    matches = [path for path in sweep.iterdir() if path.name.split("_", 1)[0] == str(number)]
    assert len(matches) == 1, f"job {number} in {sweep}: {sorted(p.name for p in sweep.iterdir())}"
    return matches[0]
