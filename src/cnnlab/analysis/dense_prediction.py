"""Detection and segmentation of image files of any size: run at the model's canvas size, report in
the file's own pixels, and draw the result (boxes with labels legible on any background; torchvision's
mask drawing)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms.v2 import functional as F
from torchvision.utils import draw_segmentation_masks

from cnnlab.analysis.detection import run_detector
from cnnlab.analysis.segmentation import mask_colours, run_segmenter

DRAWN_SIZE = 384  # small images are enlarged (nearest) before drawing, so the labels stay readable
LABEL_HEIGHT = 1 / 24  # a box label's font size, of the drawn image's longer side (16 px at 384)


def _to_canvas(model: Any, originals: Sequence[torch.Tensor]) -> torch.Tensor:
    size = model.datamodule.shape[-1]
    return torch.stack([F.resize(image, [size, size], antialias=True) for image in originals])


def detect_files(
    model: Any,
    files: Sequence[Path],
    originals: Sequence[torch.Tensor],
    device: torch.device,
    batch_size: int,
    min_score: float,
) -> list[dict[str, Any]]:
    """Per file: (class name, score, box in the file's pixels) of each detection scoring >= min_score."""
    size = model.datamodule.shape[-1]
    detections = run_detector(
        model.net, _to_canvas(model, originals), model.datamodule.normalize, device, batch_size
    )
    names = model.class_names
    results = []
    for path, original, detection in zip(files, originals, detections, strict=True):
        height, width = original.shape[-2:]
        scale = torch.tensor([width / size, height / size, width / size, height / size])
        keep = detection["scores"] >= min_score
        boxes = [
            (names[label], score, tuple(box))
            for label, score, box in zip(
                detection["labels"][keep].tolist(),
                detection["scores"][keep].tolist(),
                (detection["boxes"][keep] * scale).tolist(),
                strict=True,
            )
        ]
        lines = [
            f"{path}: {name} {score:.4f} ({', '.join(f'{v:.1f}' for v in box)})" for name, score, box in boxes
        ]
        results.append({"file": str(path), "boxes": boxes, "line": "\n".join(lines) or f"{path}: no objects"})
    return results


def segment_files(
    model: Any,
    files: Sequence[Path],
    originals: Sequence[torch.Tensor],
    device: torch.device,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Per file: its predicted mask at its own size and the pixel count of each class present."""
    masks = run_segmenter(
        model.net, _to_canvas(model, originals), model.datamodule.normalize, device, batch_size
    )
    names = ["background", *model.class_names]
    results = []
    for path, original, mask in zip(files, originals, masks, strict=True):
        full = F.resize(mask[None].to(torch.uint8), list(original.shape[-2:]), F.InterpolationMode.NEAREST)[0]
        counts = torch.bincount(full.flatten().long(), minlength=len(names))
        pixels = {names[c]: int(n) for c, n in enumerate(counts.tolist()) if n}
        line = f"{path}: " + ", ".join(f"{name} {count}" for name, count in pixels.items())
        results.append({"file": str(path), "mask": full, "pixels": pixels, "line": line})
    return results


def annotate(model: Any, original: torch.Tensor, prediction: dict[str, Any]) -> Image.Image:
    """The image (RGB, enlarged when small) with its boxes and labels, or its mask overlaid."""
    height, width = original.shape[-2:]
    factor = max(1, math.ceil(DRAWN_SIZE / max(height, width)))
    image = original.expand(3, -1, -1) if original.shape[0] == 1 else original
    image = F.resize(image, [height * factor, width * factor], F.InterpolationMode.NEAREST)
    if "boxes" in prediction:
        names = list(model.class_names)
        palette = mask_colours(len(names)).colors[1:]  # the class colours of the segmentation figures
        boxes = [
            (tuple(v * factor for v in box), f"{name} {score:.2f}", palette[names.index(name) % len(palette)])
            for name, score, box in prediction["boxes"]
        ]
        return draw_labelled_boxes(F.to_pil_image(image), boxes)
    drawn_size = [height * factor, width * factor]
    mask = F.resize(prediction["mask"][None], drawn_size, F.InterpolationMode.NEAREST)[0]
    classes = len(model.class_names)
    colours = [tuple(int(255 * c) for c in rgb) for rgb in mask_colours(classes).colors[1:]]
    present = torch.stack([mask == c + 1 for c in range(classes)])
    image = draw_segmentation_masks(image, present, alpha=0.6, colors=colours)
    return F.to_pil_image(image)


def draw_labelled_boxes(
    image: Image.Image, boxes: Sequence[tuple[Sequence[float], str, Sequence[float]]]
) -> Image.Image:
    """Each (box x1, y1, x2, y2 in pixels, label, RGB colour in [0, 1]) drawn on ``image`` (RGB): the box
    outlined in its colour, its label above it (inside it at the image's top edge) in black or white,
    whichever contrasts, on a filled patch of the same colour."""
    draw = ImageDraw.Draw(image)
    size = max(image.size)
    font = ImageFont.load_default(size=max(12, round(size * LABEL_HEIGHT)))
    line, pad = max(2, size // 192), max(2, size // 128)
    for box, label, colour in boxes:
        fill = tuple(round(255 * c) for c in colour[:3])
        x1, y1, x2, y2 = (round(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=fill, width=line)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        width, height = right - left + 2 * pad, bottom - top + 2 * pad
        y = y1 - height if y1 >= height else y1
        x = min(x1, image.width - width)  # kept inside on the right
        draw.rectangle((x, y, x + width, y + height), fill=fill)
        text = (0, 0, 0) if _luminance(fill) > 140 else (255, 255, 255)
        draw.text((x + pad - left, y + pad - top), label, fill=text, font=font)
    return image


def _luminance(rgb: Sequence[int]) -> float:
    red, green, blue = rgb
    return 0.299 * red + 0.587 * green + 0.114 * blue
