from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The suite gives the same results whatever the caller's shell exports (all set before torch loads):
# - pytest-xdist (`-n auto` in pyproject.toml) runs one worker per core: each worker, and every entry point
#   it starts as a subprocess, gets its share of the cores instead of all of them; with one process
#   (`-n 0`) torch picks its own thread count, as in a user's run
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _WORKERS))
else:
    os.environ.pop("OMP_NUM_THREADS", None)
# - HYDRA_FULL_ERROR=1 turns the one-line config errors the tests expect into tracebacks (tests that
#   check it set it themselves)
os.environ.pop("HYDRA_FULL_ERROR", None)
# - the tests train on the CPU (their configs say trainer.accelerator=cpu; the GPU checks are
#   `python -m bench suite=gpu`): no GPU is visible, so every test takes the same path on every machine
#   and a GPU the caller hid or kept for other work is never touched
os.environ["CUDA_VISIBLE_DEVICES"] = ""

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


@pytest.fixture(autouse=True)
def _no_data_root_from_the_caller(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default data root (``$CNNLAB_DATA``, else ./data) is the caller's: only the real-data tests,
    which read the real datasets there, see it; the others name their data or expect none."""
    if request.node.get_closest_marker("real_data") is None:
        monkeypatch.delenv("CNNLAB_DATA", raising=False)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with tiny CIFAR-10 / MNIST / Fashion-MNIST files in the real formats."""
    return write_all(tmp_path_factory.mktemp("data"))


def run_entry(module: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``python -m <module> <args>`` in this process (saves the torch import per run)."""
    entry = __import__(module)
    monkeypatch.setattr(sys, "argv", [module, *args])
    entry.main()


def tiny_train_args(run_dir: Path, data_root: Path, *overrides: str) -> list[str]:
    """``python -m train`` arguments of a tiny run into ``run_dir``."""
    return [f"hydra.run.dir={run_dir}", f"data.root={data_root}", *TINY, *overrides]


@pytest.fixture
def train_run(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., dict[str, Any]]:
    """Train through the real entry point on the tiny data; returns the run record."""
    counter = iter(range(1000))

    def run(*overrides: str, run_dir: Path | None = None) -> dict[str, Any]:
        run_dir = run_dir or tmp_path / f"run{next(counter)}"
        run_entry("train", tiny_train_args(run_dir, tiny_data, *overrides), monkeypatch)
        return read_run_record(run_dir)

    return run


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, new_session: bool = False
) -> subprocess.CompletedProcess:
    """Run ``python <args>`` in a subprocess, as a user would (``new_session``: in a process group of
    its own, so that a signal to the group spares pytest)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=new_session,
    )


def run_forked(
    module: str, args: list[str], env: dict[str, str] | None = None, new_session: bool = False
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <args>`` in a forked child: a process of its own to crash or signal,
    without importing torch and Lightning again (about 4 s a process). A process whose OpenMP ran on
    more than one thread cannot fork safely (the child's first parallel region waits forever on the
    parent's threads), nor can one on macOS: there it starts a new interpreter instead."""
    import torch

    if sys.platform != "linux" or torch.get_num_threads() > 1:
        return run_cli(["-m", module, *args], cwd=REPO, env=env, new_session=new_session)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                if new_session:
                    os.setsid()
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
                sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
                os.environ.update(env or {})
                os.chdir(REPO)
                sys.argv = [module, *args]
                __import__(module).main()
                code = 0
            except SystemExit as exit_info:
                code = exit_info.code if isinstance(exit_info.code, int) else int(exit_info.code is not None)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        status = _wait_for(pid, [module, *args], group=new_session)
        returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            [module, *args],
            returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def _wait_for(pid: int, command: list[str], group: bool, timeout_s: float = 600) -> int:
    """The child's wait status; past the timeout it is killed (with its group) and the test fails."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            (os.killpg if group else os.kill)(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise subprocess.TimeoutExpired(command, timeout_s)
        time.sleep(0.05)


def job_dir(sweep: Path, number: int) -> Path:
    """A sweep job's folder: named by its number and its overrides (``0_model-mlp+seed-0``)."""
    matches = [path for path in sweep.iterdir() if path.name.split("_", 1)[0] == str(number)]
    assert len(matches) == 1, f"job {number} in {sweep}: {sorted(p.name for p in sweep.iterdir())}"
    return matches[0]
