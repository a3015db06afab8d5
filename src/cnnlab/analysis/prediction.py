"""`python -m predict`: classify image files with a trained checkpoint, top-k classes per image."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as F

from cnnlab.analysis.checkpoints import TrainedModel, load_trained_model
from cnnlab.analysis.inference import pick_device, predict_logits, trained_precision
from cnnlab.data.image_folder import IMAGE_SUFFIXES
from cnnlab.errors import ConfigError, DataError
from cnnlab.tasks import CLASSIFY, DETECT


def image_files(path: str | Path | None) -> list[Path]:
    """The image itself, or a folder's image files (by suffix, sorted; other files are ignored)."""
    if path is None or str(path) == "":
        raise ConfigError("no image given: pass image=<file> or image=<folder of images>")
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"image={path} does not exist")
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"the folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_image(path: Path, channels: int, size: int | None) -> torch.Tensor:
    """A (channels, size, size) uint8 image, as the dataset's images are: grey or RGB, resized to fit
    (``size`` None: at its own size).

    Resizing does not keep the aspect ratio: the whole picture is squeezed into the model's square.
    """
    try:
        with Image.open(path) as image:
            converted = image.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"cannot read {path} as an image ({error}); pass PNG or JPEG files") from error
    tensor = F.pil_to_tensor(converted)
    if channels not in (1, 3):
        raise ConfigError(f"cannot feed photos to a model of {channels} input channels")
    if size is not None and tuple(tensor.shape[-2:]) != (size, size):
        tensor = F.resize(tensor, [size, size], antialias=True)
    return tensor


def top_classes(
    files: Sequence[Path], scores: Any, names: Sequence[str], top_k: int = 5
) -> list[dict[str, Any]]:
    """Per file: the ``top_k`` class names with their scores (probabilities, SVM margins), highest first."""
    if top_k < 1:
        raise ConfigError(f"top_k={top_k} is invalid; use 1 or more")
    values, classes = torch.as_tensor(scores).topk(min(top_k, len(names)), dim=-1)
    return [
        {"file": str(path), "top": [(names[c], float(v)) for c, v in zip(row_c, row_v, strict=True)]}
        for path, row_c, row_v in zip(files, classes.tolist(), values.tolist(), strict=True)
    ]


def predict_files(
    model: TrainedModel, files: Sequence[Path], device: torch.device, top_k: int = 5, batch_size: int = 256
) -> list[dict[str, Any]]:
    """Per file: its top-k class names and probabilities, most probable first."""
    if top_k < 1:
        raise ConfigError(f"top_k={top_k} is invalid; use 1 or more")
    channels, size, _ = model.datamodule.shape
    # a folder-trained model reads images as its training images were made (centre crop); others squeeze
    load = getattr(model.datamodule, "load_image", None) or (lambda path: read_image(path, channels, size))
    images = torch.stack([load(path) for path in files])
    precision = trained_precision(model.config.get("trainer", {}), device)
    logits = predict_logits(model.net, images, model.datamodule.normalize, device, batch_size, precision)
    return top_classes(files, logits.softmax(dim=-1), model.class_names, top_k)


def format_prediction(prediction: dict[str, Any], value: str = "prob") -> str:
    """``file: class 0.9876, ...``; SVM scores (``value="score"``) are signed margins."""
    shown = "{:+.4f}" if value == "score" else "{:.4f}"
    return f"{prediction['file']}: " + ", ".join(f"{name} {shown.format(v)}" for name, v in prediction["top"])


def write_predictions(predictions: Sequence[dict[str, Any]], path: Path, value: str = "prob") -> None:
    """A CSV with one row per image: file, class_1, prob_1, ..., class_k, prob_k (or score_k)."""
    top_k = max(len(p["top"]) for p in predictions)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["file", *[f"{kind}_{rank}" for rank in range(1, top_k + 1) for kind in ("class", value)]]
        )
        for prediction in predictions:
            writer.writerow(
                [prediction["file"], *[v for name, p in prediction["top"] for v in (name, f"{p:.6f}")]]
            )


def check_output(output: str | Path | None, overwrite: bool) -> Path | None:
    """The CSV to write, refused before any work when it exists and ``overwrite`` is off."""
    out = Path(output).expanduser() if output else None
    if out is not None and out.exists() and not overwrite:
        raise ConfigError(
            f"output={out} already exists; pass overwrite=true or another output (nothing written)"
        )
    return out


def predict(
    ckpt_path: str | Path | None,
    image: str | Path | None,
    output: str | Path | None = None,
    overwrite: bool = False,
    top_k: int = 5,
    batch_size: int = 256,
    device: str = "auto",
    dataset: str | None = None,
    output_dir: str | Path | None = None,
    min_score: float = 0.5,
) -> list[dict[str, Any]]:
    """Classify ``image`` (a file or a folder), print the top-k per image, optionally write a CSV.

    A detector prints one line per box scoring at least ``min_score`` and a U-Net the pixels of each
    class; both write annotated PNGs into ``output_dir`` when it is given.
    """
    out = check_output(output, overwrite)
    files = image_files(image)
    model = load_trained_model(ckpt_path, dataset=dataset)
    if model.task.name != CLASSIFY:
        return predict_dense(
            model, files, out, pick_device(device), batch_size, output_dir, min_score, overwrite
        )
    predictions = predict_files(model, files, pick_device(device), top_k, batch_size)
    for prediction in predictions:
        print(format_prediction(prediction))
    if out is not None:
        write_predictions(predictions, out)
        print(f"{len(predictions)} predictions -> {out}")
    return predictions


def predict_dense(
    model: TrainedModel,
    files: Sequence[Path],
    out: Path | None,
    device: torch.device,
    batch_size: int,
    output_dir: str | Path | None,
    min_score: float,
    overwrite: bool,
) -> list[dict[str, Any]]:
    """Detect objects in, or segment, each file at the model's canvas size; results in the file's pixels."""
    from cnnlab.analysis.dense_prediction import annotate, detect_files, segment_files

    pictures = Path(output_dir).expanduser() if output_dir else None
    if pictures is not None and pictures.is_dir() and any(pictures.iterdir()) and not overwrite:
        raise ConfigError(
            f"output_dir={pictures} already holds files; pass overwrite=true or another output_dir "
            "(nothing written)"
        )
    channels = model.datamodule.shape[0]
    originals = [read_image(path, channels, None) for path in files]
    if model.task.name == DETECT:
        predictions = detect_files(model, files, originals, device, batch_size, min_score)
    else:
        predictions = segment_files(model, files, originals, device, batch_size)
    for prediction in predictions:
        print(prediction["line"])
    if pictures is not None:
        pictures.mkdir(parents=True, exist_ok=True)
        for prediction, original in zip(predictions, originals, strict=True):
            annotate(model, original, prediction).save(pictures / f"{Path(prediction['file']).stem}.png")
        print(f"{len(predictions)} annotated images -> {pictures}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as file:
            writer = csv.writer(file)
            if model.task.name == DETECT:
                writer.writerow(["file", "class", "score", "x1", "y1", "x2", "y2"])
                for p in predictions:
                    for name, score, box in p["boxes"]:
                        writer.writerow([p["file"], name, f"{score:.6f}", *(f"{v:.1f}" for v in box)])
            else:
                writer.writerow(["file", "class", "pixels"])
                for p in predictions:
                    writer.writerows([p["file"], name, count] for name, count in p["pixels"].items())
        print(f"{len(predictions)} predictions -> {out}")
    return predictions
