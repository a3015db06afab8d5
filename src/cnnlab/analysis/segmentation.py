"""A U-Net's test-canvas analysis: mean and per-class IoU, pixel accuracy (torchmetrics), and the
canvases beside their true and predicted masks and the errors."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from cnnlab.analysis.figures import save, show_image
from cnnlab.analysis.inference import normalized_batches

SHOWN = 6  # canvases (rows) in segmentation.png


def mask_colours(num_classes: int) -> ListedColormap:
    """Black background, then one distinct colour per class."""
    import matplotlib

    palette = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20"].colors
    return ListedColormap([(0, 0, 0), *palette[:num_classes]])


@torch.inference_mode()
def run_segmenter(
    net: nn.Module,
    images: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int = 256,
) -> torch.Tensor:
    """(N, H, W) predicted masks (0 background, class + 1) of (N, C, H, W) uint8 images, on the CPU."""
    batches = normalized_batches(net, images, normalize, device, batch_size)
    return torch.cat([net.segment(batch).cpu() for batch in batches])


def plot_segmentation(
    images: torch.Tensor,
    truth: torch.Tensor,
    predicted: torch.Tensor,
    names: Sequence[str],
    path: Path,
    caption: str,
) -> Path:
    """Per row: the canvas, its true mask, the predicted mask, and the wrong pixels (white)."""
    colours = mask_colours(len(names) - 1)
    figure = Figure(figsize=(10, 2.5 * len(images) + 0.8), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(images), 4))
    for row, (image, true_mask, predicted_mask) in enumerate(zip(images, truth, predicted, strict=True)):
        show_image(axes[row, 0], image.float() / 255)
        for column, mask in ((1, true_mask), (2, predicted_mask)):
            axes[row, column].imshow(
                mask.numpy(), cmap=colours, vmin=0, vmax=len(names) - 1, interpolation="nearest"
            )
            present = [names[c] for c in mask.unique().tolist() if c]
            axes[row, column].set_title(
                ("true: " if column == 1 else "predicted: ") + " ".join(present), fontsize=8
            )
            axes[row, column].set_axis_off()
        wrong = (true_mask != predicted_mask).numpy()
        axes[row, 3].imshow(wrong, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[row, 3].set_title(f"errors: {int(wrong.sum())} pixels", fontsize=8)
        axes[row, 3].set_axis_off()
    figure.suptitle(caption, fontsize=9)
    return save(figure, path)


def evaluate_segmentation(model: Any, out: Path, device: torch.device, batch_size: int) -> dict[str, Any]:
    """Segment every test canvas; write segmentation.png and per_class_iou.csv; the metrics."""
    datamodule = model.datamodule
    datamodule.setup("test")
    canvases = datamodule.test_set.canvases
    truth = canvases.masks.long()
    predicted = run_segmenter(model.net, canvases.images, datamodule.normalize, device, batch_size)
    names = ["background", *model.class_names]
    classes = len(names)
    per_class_iou = MulticlassJaccardIndex(classes, average="none")(predicted, truth).tolist()
    miou = float(MulticlassJaccardIndex(classes, average="macro")(predicted, truth))
    pixel_accuracy = float(MulticlassAccuracy(classes, average="micro")(predicted, truth))
    pixels = torch.bincount(truth.flatten(), minlength=classes).tolist()
    per_class = [
        {"class": name, "iou": iou, "pixels": count}
        for name, iou, count in zip(names, per_class_iou, pixels, strict=True)
    ]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "per_class_iou.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["class", "iou", "pixels"])
        writer.writeheader()
        writer.writerows(per_class)
    shown = slice(0, min(SHOWN, len(truth)))
    picture = plot_segmentation(
        canvases.images[shown],
        truth[shown],
        predicted[shown],
        names,
        out / "segmentation.png",
        f"test canvases 0-{min(SHOWN, len(truth)) - 1}: image, true mask, predicted mask, wrong pixels "
        f"(mIoU {miou:.3f} over all {len(truth):,} canvases)",
    )
    metrics = {
        "task": "segment",
        "images": len(truth),
        "miou": miou,
        "pixel_accuracy": pixel_accuracy,
        "per_class": per_class,
    }
    return {"metrics": metrics, "pictures": {"segmentation": picture}}


def summary_line(metrics: dict[str, Any]) -> str:
    objects = [row for row in metrics["per_class"] if row["class"] != "background"]
    worst = min(objects, key=lambda row: row["iou"], default=None)
    weakest = f"; weakest class {worst['class']} (IoU {worst['iou']:.3f})" if worst else ""
    return (
        f"{metrics['model']} on {metrics['dataset']} ({Path(metrics['checkpoint']).name}): test mIoU "
        f"{metrics['miou']:.4f} (background included), pixel accuracy {metrics['pixel_accuracy']:.4f} on "
        f"{metrics['images']:,} canvases{weakest} -> {metrics['output_dir']}"
    )
