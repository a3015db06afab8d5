"""`python -m export` end to end on a tiny trained run: the files, their metadata, their logits, the
bad inputs; and on the real CIFAR-10, the README's onnxruntime script against the recorded accuracy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.analysis.checkpoints import load_trained_model
from cnnlab.analysis.export import METADATA_KEYS
from cnnlab.runs.record import read_run_record
from tests.conftest import REPO, TINY, run_entry

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # deprecated, still read
onnxruntime = pytest.importorskip("onnxruntime", reason='the [export] extra: pip install -e ".[export]"')

CIFAR10_CLASSES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def export(args: list[str]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        run_entry("export", args, patch)


@pytest.fixture(scope="module")
def run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SmallCNN trained one epoch on the tiny CIFAR-10 through `python -m train`."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    with pytest.MonkeyPatch.context() as patch:
        args = [f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", *TINY, "model=smallcnn"]
        run_entry("train", [*args, "model.widths=[8,16,16]"], patch)
    return run_dir


@pytest.fixture(scope="module")
def exported(run: Path) -> dict[str, Path]:
    """The run exported once in each format, through the entry point."""
    files = {"onnx": run.parent / "model.onnx", "torchscript": run.parent / "model.pt"}
    for format, path in files.items():
        export([f"ckpt_path={run}", f"format={format}", f"out={path}"])
    return files


def normalised_test_images(run: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's first ``count`` test images, normalised as in training, and the checkpoint's logits."""
    model = load_trained_model(run)
    model.datamodule.setup("test")
    test_set = model.datamodule.test_set
    images = model.datamodule.normalize(test_set.split.images[test_set.indices[:count]])
    with torch.inference_mode():
        return images, model.net(images)


def check_metadata(meta: dict[str, str], run: Path) -> None:
    assert set(meta) == set(METADATA_KEYS)
    value = {key: json.loads(text) for key, text in meta.items()}
    record = read_run_record(run)
    assert value["cnnlab.classes"] == CIFAR10_CLASSES
    assert value["cnnlab.mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert value["cnnlab.std"] == pytest.approx([0.2470, 0.2435, 0.2616])
    assert value["cnnlab.image_size"] == 32 and value["cnnlab.channels"] == 3
    assert value["cnnlab.model"] == "smallcnn" and value["cnnlab.dataset"] == "cifar10"
    assert value["cnnlab.test_acc"] == pytest.approx(record["test_acc"])
    assert value["cnnlab.git_commit"] == record.get("git_commit")
    assert value["cnnlab.precision"] == "fp32"


def test_onnx_file_describes_itself_and_reproduces_the_checkpoint(
    run: Path, exported: dict[str, Path]
) -> None:
    session = onnxruntime.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    check_metadata(session.get_modelmeta().custom_metadata_map, run)
    (image_input,) = session.get_inputs()
    assert image_input.name == "images" and isinstance(image_input.shape[0], str)  # a named, dynamic axis
    assert [o.name for o in session.get_outputs()] == ["logits"]
    images, expected = normalised_test_images(run, 7)
    for batch in (1, 7):
        (logits,) = session.run(None, {"images": images[:batch].numpy()})
        assert logits.shape == (batch, 10)
        np.testing.assert_allclose(logits, expected[:batch].numpy(), atol=1e-4)
    assert not [p.name for p in exported["onnx"].parent.iterdir() if p.name.endswith(".part")]


def test_torchscript_file_describes_itself_and_reproduces_the_checkpoint(
    run: Path, exported: dict[str, Path]
) -> None:
    meta = dict.fromkeys(METADATA_KEYS, "")
    loaded = torch.jit.load(str(exported["torchscript"]), _extra_files=meta)
    check_metadata(meta, run)
    images, expected = normalised_test_images(run, 7)
    with torch.inference_mode():
        for batch in (1, 7):
            torch.testing.assert_close(loaded(images[:batch]), expected[:batch], atol=1e-4, rtol=1e-4)


def test_export_prints_its_check_and_a_bf16_torchscript_keeps_a_float32_interface(
    run: Path, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "bf16.pt"
    export([f"ckpt_path={run}", "format=torchscript", f"out={path}", "precision=bf16"])
    out = capsys.readouterr().out
    assert re.search(
        r"checked on the first 100 test images: max \|logit difference\| \S+ \(tolerance 0.5\)", out
    )
    assert "top-1 agreement" in out and f"-> {path} (torchscript, bf16" in out
    meta = {"cnnlab.precision": ""}
    loaded = torch.jit.load(str(path), _extra_files=meta)
    assert json.loads(meta["cnnlab.precision"]) == "bf16"
    images, expected = normalised_test_images(run, 4)
    with torch.inference_mode():
        logits = loaded(images)
    assert logits.dtype == torch.float32 and torch.allclose(logits, expected, atol=0.5)


def expect_refusal(args: list[str], out: Path, capsys, *fragments: str) -> None:
    """One `error:` line, exit status 2, and nothing new at ``out`` or beside it."""
    before = {p: p.read_bytes() for p in out.parent.iterdir() if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        export([*args, f"out={out}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    assert {p: p.read_bytes() for p in out.parent.iterdir() if p.is_file()} == before


def test_bad_inputs_are_one_line_errors_that_write_nothing(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    expect_refusal([f"ckpt_path={tmp_path / 'missing.ckpt'}"], out, capsys, "checkpoint not found")
    expect_refusal([f"ckpt_path={run}", "format=tflite"], out, capsys, "format=tflite is unknown")
    expect_refusal([f"ckpt_path={run}", "precision=bf16"], out, capsys, "format=torchscript only")
    expect_refusal([f"ckpt_path={run}", "tolerance=-1"], out, capsys, "does not reproduce the checkpoint")

    out.write_bytes(b"someone else's file")
    expect_refusal([f"ckpt_path={run}"], out, capsys, "already exists", "overwrite=true")
    out.unlink()

    # only the run directory's model.joblib tells a HOG + SVM run apart (before anything is loaded)
    hog = tmp_path / "hog_run"
    hog.mkdir()
    (hog / "model.joblib").write_bytes(b"")
    expect_refusal([f"ckpt_path={hog}"], out, capsys, "HOG + linear SVM run, not a network", "predict")

    checkpoint = torch.load(run / read_run_record(run)["best_checkpoint"], weights_only=True)
    checkpoint["cnnlab_config"]["model"]["_target_"] = "cnnlab.models.detector.Detector"
    detector = tmp_path / "detector.ckpt"
    torch.save(checkpoint, detector)
    expect_refusal([f"ckpt_path={detector}"], out, capsys, "is a detect checkpoint", "python -m predict")


def test_onnx_without_the_extra_says_what_to_install(
    run: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    out = tmp_path / "model.onnx"
    expect_refusal([f"ckpt_path={run}"], out, capsys, "needs the onnxruntime package", '".[export]"')
    export([f"ckpt_path={run}", "format=torchscript", f"out={tmp_path / 'model.pt'}"])  # needs no extra


REAL_CIFAR10 = Path(os.environ.get("CNNLAB_DATA") or "/nonexistent") / "cifar-10-batches-py" / "test_batch"
SMALLCNN = REPO / "docs" / "runs" / "smallcnn-cifar10-seed0"


def readme_script(*needles: str) -> str:
    """The README's python block that holds every one of ``needles``."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    (script,) = [block for block in blocks if all(needle in block for needle in needles)]
    return script


@pytest.mark.real_data
@pytest.mark.skipif(not REAL_CIFAR10.is_file(), reason="real CIFAR-10 not found under CNNLAB_DATA")
def test_readme_onnxruntime_script_reproduces_the_recorded_accuracy_without_torch(tmp_path: Path) -> None:
    export([f"ckpt_path={SMALLCNN}", "format=onnx", f"out={tmp_path / 'smallcnn.onnx'}"])
    script = readme_script("test_batch", "onnxruntime")
    # the script runs where torch cannot be imported
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.modules['torch'] = None\n{script}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", result.stdout).group(1))
    assert accuracy == pytest.approx(read_run_record(SMALLCNN)["test_acc"], abs=0.002)
