"""The project built as a wheel and installed outside the checkout runs its entry points from any folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, TINY

# runs an entry point from the installed copy alone: the checkout's src/ (the editable install's
# path entry) is taken off sys.path, and the import is checked to come from the installed folder
LAUNCH = """
import os, runpy, sys
site, module = sys.argv[1], sys.argv[2]
sys.path[:] = [site] + [p for p in sys.path if os.path.realpath(p or ".") != {src!r}]
sys.argv = [module, *sys.argv[3:]]
import cnnlab
assert cnnlab.__file__.startswith(site), cnnlab.__file__
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_the_installed_wheel_runs_train_evaluate_predict_and_results_from_any_folder(
    tiny_data: Path, tmp_path: Path
) -> None:
    pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(REPO))
    (wheel,) = (tmp_path / "dist").glob("cnnlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cnnlab/conf/train.yaml" in names and "train.py" in names
    site = tmp_path / "site"
    pip("install", "--no-deps", "--no-compile", "-q", "--target", str(site), str(wheel))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    launch = LAUNCH.format(src=os.path.realpath(REPO / "src"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}

    def entry(module: str, *args: str) -> str:
        command = [sys.executable, "-c", launch, str(site), module, *args]
        result = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{module}: {result.stderr[-3000:]}"
        return result.stdout + result.stderr

    run_dir = elsewhere / "run"
    entry("train", f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", "model=mlp", "data=mnist", *TINY)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["test_acc"] is not None

    said = entry("evaluate", f"ckpt_path={run_dir}", f"data.root={tiny_data}")
    assert (run_dir / "eval" / "eval_metrics.json").is_file(), said

    digit = elsewhere / "digit.png"
    Image.fromarray(np.full((28, 28), 200, dtype=np.uint8)).save(digit)
    said = entry("predict", f"ckpt_path={run_dir}", f"image={digit}")
    assert "digit.png" in said

    said = entry("results", str(run_dir))
    assert "mlp" in said and "mnist" in said
