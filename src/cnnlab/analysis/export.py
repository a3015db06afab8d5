"""`python -m export`: a trained classifier as one self-describing ONNX or TorchScript file.

The file carries what running it needs besides the network (class names, input size and channels,
normalisation) as JSON strings under ``cnnlab.*`` keys: ONNX ``metadata_props``, TorchScript
``_extra_files``. It is checked against the checkpoint on the run's first test images before it
replaces ``out``, so a file at ``out`` is always a whole, checked export.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.analysis.checkpoints import (
    TrainedModel,
    read_checkpoint,
    rebuild_trained_model,
    task_of_config,
)
from cnnlab.analysis.inference import predict_logits
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError
from cnnlab.runs.record import git_state, resolve_checkpoint_path

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
PRECISIONS = ("32", "bf16")
# the highest opset that the dynamo exporter of torch 2.4+ emits by default and that onnxruntime has run
# since 1.14 (2023): old enough for phones and browsers, new enough for every layer of these networks
ONNX_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "images", "logits"
# the metadata keys, in the order they are written; TorchScript readers must name them to load them
METADATA_KEYS = (
    "cnnlab.classes",
    "cnnlab.mean",
    "cnnlab.std",
    "cnnlab.image_size",
    "cnnlab.channels",
    "cnnlab.model",
    "cnnlab.dataset",
    "cnnlab.test_acc",
    "cnnlab.git_commit",
    "cnnlab.export_git_commit",
    "cnnlab.precision",
    "cnnlab.input",
    "cnnlab.output",
)
# exported fp32 against the checkpoint in fp32: only the order of float sums differs
# (the differences measured: docs/export.md#the-check-at-export)
FP32_TOLERANCE = 1e-3
# a bf16 file against the checkpoint in its run's bf16 autocast: bf16 keeps 8 bits of mantissa, and
# casting every weight (not only the matmuls, as autocast does) moves logits by up to a few tenths
BF16_TOLERANCE = 0.5
MIN_AGREEMENT = {"32": 0.999, "bf16": 0.98}
EXTRA_HINT = 'pip install -e ".[export]" (or: pip install onnx onnxruntime onnxscript)'


class ExportCheckError(CnnlabError):
    """The exported file does not reproduce the checkpoint's logits or predictions."""


@dataclass
class ExportCheck:
    """The exported file against the checkpoint on the first test images."""

    images: int
    max_logit_difference: float
    tolerance: float
    agreement: float  # fraction of images whose top-1 class is the same
    exported_accuracy: float
    checkpoint_accuracy: float

    def line(self) -> str:
        return (
            f"checked on the first {self.images} test images: max |logit difference| "
            f"{self.max_logit_difference:.2e} (tolerance {self.tolerance:g}), top-1 agreement "
            f"{round(self.agreement * self.images)}/{self.images} ({self.agreement:.2%}); accuracy "
            f"{self.exported_accuracy:.4f} (checkpoint {self.checkpoint_accuracy:.4f})"
        )


def check_request(format: str, out: str | Path | None, overwrite: bool, precision: str = "32") -> Path:
    """The output file, once the format, precision and ``out`` are valid: before any work."""
    if format not in FORMATS:
        raise ConfigError(f"format={format} is unknown; use format=onnx or format=torchscript")
    if str(precision) not in PRECISIONS:
        raise ConfigError(f"precision={precision} is unknown; use precision=32 (default) or precision=bf16")
    if str(precision) == "bf16" and format == "onnx":
        raise ConfigError(
            "precision=bf16 is for format=torchscript only: onnxruntime's CPU provider has no bf16 "
            "convolutions; export ONNX in fp32 (precision=32)"
        )
    if out is None or str(out) == "":
        raise ConfigError(f"no output file given: pass out=model{FORMATS[format]}")
    path = Path(out).expanduser()
    if path.is_dir():
        raise ConfigError(f"out={path} is a directory; pass a file name, e.g. out={path / 'model'}")
    if path.exists() and not overwrite:
        raise ConfigError(f"out={path} already exists; pass overwrite=true or another out (nothing written)")
    if format == "onnx":
        require_onnx()
    return path


def require_onnx() -> None:
    """onnx, onnxruntime and onnxscript (the dynamo exporter's) are the optional ``[export]`` extra."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"format=onnx needs the {error.name} package: {EXTRA_HINT}") from error


def metadata(model: TrainedModel, precision: str) -> dict[str, str]:
    """The ``cnnlab.*`` keys, each a JSON value: what a runtime needs to feed the network and read it."""
    datamodule = model.datamodule
    channels, image_size, _ = datamodule.shape
    record = model.record
    pixels = "grey" if channels == 1 else "RGB"
    values: dict[str, Any] = {
        "cnnlab.classes": datamodule.classes,
        "cnnlab.mean": datamodule.normalize.mean,
        "cnnlab.std": datamodule.normalize.std,
        "cnnlab.image_size": image_size,
        "cnnlab.channels": channels,
        "cnnlab.model": record.get("model") or model.model_name.lower(),
        "cnnlab.dataset": model.config["data"]["name"],
        "cnnlab.test_acc": record.get("test_acc"),
        "cnnlab.git_commit": record.get("git_commit"),  # the code that trained it (null: not recorded)
        "cnnlab.export_git_commit": git_state(Path(__file__).parent).get("git_commit"),
        "cnnlab.precision": "bf16" if precision == "bf16" else "fp32",
        "cnnlab.input": (
            f"{INPUT_NAME}: float32 (batch, {channels}, {image_size}, {image_size}), {pixels} pixels "
            "scaled to 0-1, then (x - mean) / std per channel"
        ),
        "cnnlab.output": (
            f"{OUTPUT_NAME}: float32 (batch, classes) in cnnlab.classes order; softmax for probabilities"
        ),
    }
    return {key: json.dumps(values[key]) for key in METADATA_KEYS}


class Bfloat16Network(nn.Module):
    """The network in bf16 behind a float32 interface, so that a bf16 file is fed and read like any other."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.to(torch.bfloat16)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.to(torch.bfloat16)).float()


@contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Only warnings and errors from these libraries' loggers while the block runs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def readable_by_all(path: Path) -> None:
    """The permissions of a file opened normally (mkstemp makes it private to its owner)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def write_onnx(net: nn.Module, example: torch.Tensor, props: dict[str, str], path: Path) -> None:
    """The network as ONNX with a dynamic batch axis, metadata in ``metadata_props``, in one file."""
    import onnx

    batch = torch.export.Dim("batch", min=1)
    # the dynamo exporter reports each of its steps on stdout and its graph optimiser each pass in the
    # log: keep the command's output to its result
    with redirect_stdout(StringIO()), warnings.catch_warnings(), quiet_loggers("onnxscript", "onnx_ir"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, props)
    onnx.save_model(proto, str(path), save_as_external_data=False)


def write_torchscript(net: nn.Module, example: torch.Tensor, props: dict[str, str], path: Path) -> None:
    """The network traced to TorchScript (no cnnlab classifier branches on its input), metadata in
    ``_extra_files``."""
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.9+ marks TorchScript deprecated; it is still what C++ (libtorch) and mobile load
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(net, example)
        torch.jit.save(traced, str(path), _extra_files=props)


def runner_of(format: str, path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The written file loaded back the way a user loads it: normalised float32 images -> logits."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load, like trace: deprecated, still read
        loaded = torch.jit.load(str(path), map_location="cpu")
    return lambda images: loaded(images)


@torch.inference_mode()
def check_export(
    model: TrainedModel,
    run_exported: Callable[[torch.Tensor], torch.Tensor],
    precision: str,
    images_to_check: int,
    tolerance: float,
    batch_size: int = 256,
) -> ExportCheck:
    """The exported file's logits against the checkpoint's (fp32; a bf16 file: the run's bf16 autocast)."""
    datamodule = model.datamodule
    datamodule.setup("test")
    test_set = datamodule.test_set
    assert test_set is not None
    indices = test_set.indices[:images_to_check]
    images, labels = test_set.split.images[indices], test_set.split.labels[indices]
    reference_precision = "bf16-mixed" if precision == "bf16" else "32-true"
    expected = predict_logits(
        model.net, images, datamodule.normalize, torch.device("cpu"), batch_size, reference_precision
    )
    exported = torch.cat(
        [
            run_exported(datamodule.normalize(images[start : start + batch_size]))
            for start in range(0, len(images), batch_size)
        ]
    ).float()
    return ExportCheck(
        images=len(images),
        max_logit_difference=float((exported - expected).abs().max()),
        tolerance=tolerance,
        agreement=float((exported.argmax(1) == expected.argmax(1)).float().mean()),
        exported_accuracy=float((exported.argmax(1) == labels).float().mean()),
        checkpoint_accuracy=float((expected.argmax(1) == labels).float().mean()),
    )


def refuse_dense(path: Path, config: dict[str, Any]) -> None:
    """Detectors and U-Nets are not exported: their raw outputs are not what a user wants from the file."""
    task = task_of_config(config, path)
    if task.export_refusal is not None:
        model = str(config["model"]["_target_"]).rsplit(".", 1)[-1]
        raise CheckpointError(
            f"{path} is a {task.name} checkpoint ({model}): {task.export_refusal}; "
            "use python -m predict ckpt_path=... image=..."
        )


def model_summary(props: dict[str, str]) -> str:
    """``smallcnn on cifar10, test_acc 0.8860``, from the file's metadata."""
    value = {key: json.loads(text) for key, text in props.items()}
    accuracy = "n/a" if value["cnnlab.test_acc"] is None else f"{value['cnnlab.test_acc']:.4f}"
    return f"{value['cnnlab.model']} on {value['cnnlab.dataset']}, test_acc {accuracy}"


def file_summary(format: str, props: dict[str, str], path: Path) -> str:
    """``onnx, opset 18, fp32, 1.2 MB``."""
    opset = f"opset {ONNX_OPSET}, " if format == "onnx" else ""
    return f"{format}, {opset}{json.loads(props['cnnlab.precision'])}, {path.stat().st_size / 1e6:.1f} MB"


def export_checkpoint(
    ckpt_path: str | Path | None,
    format: str,
    out: str | Path | None,
    overwrite: bool = False,
    precision: str = "32",
    data_root: str | Path | None = None,
    check_images: int = 1000,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """Export a classifier checkpoint (or a run directory's best) to ``out``, checked; returns what was
    written: the path, the metadata and the check's figures."""
    precision = str(precision)
    path = check_request(format, out, overwrite, precision)
    if check_images < 0:
        raise ConfigError(f"check_images={check_images} is invalid; use 0 (no check) or more")
    checkpoint_path = resolve_checkpoint_path(ckpt_path)
    checkpoint = read_checkpoint(checkpoint_path)  # read once: refused before anything is rebuilt
    refuse_dense(checkpoint_path, checkpoint["cnnlab_config"])
    model = rebuild_trained_model(checkpoint_path, checkpoint, data_root=data_root)
    tolerance = (
        tolerance if tolerance is not None else BF16_TOLERANCE if precision == "bf16" else FP32_TOLERANCE
    )
    props = metadata(model, precision)
    # a bf16 file wraps a copy: the check runs the fp32 original under the run's autocast
    net = Bfloat16Network(copy.deepcopy(model.net)) if precision == "bf16" else model.net
    channels, size, _ = model.datamodule.shape
    example = torch.zeros(2, channels, size, size)  # batch 2: a batch of 1 would let the exporter fix it
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        (write_onnx if format == "onnx" else write_torchscript)(net, example, props, temporary)
        readable_by_all(temporary)
        check = None
        if check_images:
            check = check_export(model, runner_of(format, temporary), precision, check_images, tolerance)
            print(check.line())
            failed = check.max_logit_difference > tolerance or check.agreement < MIN_AGREEMENT[precision]
            if failed:
                raise ExportCheckError(
                    f"the exported file does not reproduce the checkpoint: {check.line()}; nothing written "
                    f"to {path} (a larger tolerance= accepts it)"
                )
        else:
            print("check_images=0: the exported file was not checked against the checkpoint")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    print(f"{model_summary(props)} -> {path} ({file_summary(format, props, path)})")
    return {"path": path, "metadata": props, "check": check}
