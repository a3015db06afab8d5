"""A detector's test-canvas analysis: COCO-style mAP (torchmetrics), per-class AP and precision-recall
curves, the canvases with predicted and true boxes, and the images it recalls worst."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_iou

from cnnlab.analysis.figures import save, show_image
from cnnlab.analysis.inference import normalized_batches
from cnnlab.training.detection import detection_targets

SHOWN = 12  # canvases in detections.png and worst.png
DISPLAY_SCORE = 0.5  # boxes drawn and counted for per-image recall score at least this
MATCH_IOU = 0.5
TRUE_COLOUR = "#34c759"  # green: the true boxes, dashed
CORRECT_COLOUR, WRONG_COLOUR = "#0a84ff", "#ff3b30"  # blue: a detection matching a true box; red: not
LABEL_FONT_SIZE = 10  # points: legible on a 3-inch canvas (7 was not)
LABEL_ROOM = 0.12  # of the canvas height: a box starting lower has its label above it


@torch.inference_mode()
def run_detector(
    net: nn.Module,
    images: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int = 256,
) -> list[dict[str, torch.Tensor]]:
    """Per image of (N, C, H, W) uint8: boxes, scores and labels on the CPU."""
    batches = normalized_batches(net, images, normalize, device, batch_size)
    return [{k: v.cpu() for k, v in found.items()} for batch in batches for found in net.detect(batch)]


def image_recall(detection: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> float:
    """Fraction of true boxes matched (same class, IoU >= 0.5, each detection once, best score first)
    by the detections scoring at least DISPLAY_SCORE; 1 for an image without objects."""
    if len(target["boxes"]) == 0:
        return 1.0
    return float(_match(detection, target)[1].float().mean())


def correct_detections(detection: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> list[bool]:
    """Per detection: whether it matches a true box (as ``image_recall`` counts them); False below
    DISPLAY_SCORE."""
    return _match(detection, target)[0].tolist()


def _match(
    detection: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy matching, best score first, of the detections scoring >= DISPLAY_SCORE to the true boxes of
    their class at IoU >= MATCH_IOU: (each detection matched, each true box matched)."""
    confident = torch.where(detection["scores"] >= DISPLAY_SCORE)[0]
    order = confident[detection["scores"][confident].argsort(descending=True)]
    boxes, labels = detection["boxes"][order], detection["labels"][order]
    overlaps = box_iou(boxes, target["boxes"]) if len(boxes) else torch.zeros(0, len(target["boxes"]))
    same_class = labels[:, None] == target["labels"][None, :]
    found = torch.zeros(len(detection["scores"]), dtype=torch.bool)
    matched = torch.zeros(len(target["boxes"]), dtype=torch.bool)
    for row in range(len(order)):
        candidates = torch.where(same_class[row] & ~matched, overlaps[row], torch.zeros_like(overlaps[row]))
        if len(candidates) and float(candidates.max()) >= MATCH_IOU:
            matched[candidates.argmax()] = True
            found[order[row]] = True
    return found, matched


def plot_detections(
    images: torch.Tensor,
    detections: Sequence[dict[str, torch.Tensor]],
    targets: Sequence[dict[str, torch.Tensor]],
    names: Sequence[str],
    titles: Sequence[str],
    path: Path,
    caption: str,
) -> Path:
    """Canvases with the true boxes (green, dashed) and the detections scoring >= DISPLAY_SCORE, blue
    where they match a true box, red where they do not, labelled with class and score."""
    return save(detections_figure(images, detections, targets, names, titles, caption), path)


def detections_figure(
    images: torch.Tensor,
    detections: Sequence[dict[str, torch.Tensor]],
    targets: Sequence[dict[str, torch.Tensor]],
    names: Sequence[str],
    titles: Sequence[str],
    caption: str,
) -> Figure:
    """The figure ``plot_detections`` saves."""
    columns = min(4, max(1, len(images)))
    rows = max(1, -(-len(images) // columns))
    figure = Figure(figsize=(3.2 * columns, 3.4 * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, detection, target, title in zip(axes, images, detections, targets, titles, strict=False):
        show_image(ax, image.float() / 255)
        for box in target["boxes"].tolist():
            ax.add_patch(_rectangle(box, TRUE_COLOUR, "--"))
        for box, score, label, correct in zip(
            detection["boxes"].tolist(),
            detection["scores"].tolist(),
            detection["labels"].tolist(),
            correct_detections(detection, target),
            strict=True,
        ):
            if score < DISPLAY_SCORE:
                continue
            colour = CORRECT_COLOUR if correct else WRONG_COLOUR
            ax.add_patch(_rectangle(box, colour, "-"))
            _label(ax, box, f"{names[label]} {score:.2f}", colour, image.shape[-2])
        ax.set_title(title, fontsize=10)
    figure.suptitle(caption, fontsize=11)
    return figure


def _label(ax: Axes, box: Sequence[float], text: str, colour: str, height: int) -> None:
    # white bold text on a filled box of the detection's colour, above the box's top-left corner; inside
    # it when the box touches the canvas's top edge, where the label would cover the title
    above = box[1] >= LABEL_ROOM * height
    ax.text(
        box[0] - 0.5,
        box[1] - 0.5 if above else box[1] + 0.5,
        text,
        color="white",
        fontsize=LABEL_FONT_SIZE,
        fontweight="bold",
        va="bottom" if above else "top",
        bbox={"facecolor": colour, "edgecolor": colour, "pad": 1.5, "alpha": 0.9},
        clip_on=True,
    )


def _rectangle(box: Sequence[float], colour: str, style: str) -> Rectangle:
    # boxes are pixel edges; imshow centres pixel i at i, so its left edge is at i - 0.5
    x1, y1, x2, y2 = box
    return Rectangle(
        (x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linestyle=style, linewidth=1.5
    )


def precision_at_50(values: dict[str, torch.Tensor]) -> tuple[np.ndarray, list[float]]:
    """Per class of ``values["classes"]``: COCO's interpolated precision at 101 recall points and AP at IoU
    0.5, from torchmetrics' ``extended_summary`` (precision indexed by IoU threshold, recall point, class,
    area range, max detections; here IoU 0.5, all areas, the most detections). -1 marks recall not reached
    and a class without objects, whose AP is nan."""
    curves = values["precision"][0, :, :, 0, -1].numpy().T  # (classes, recall points)
    # COCO averages over every recall point, counting those never reached as precision 0
    aps = [float(np.clip(curve, 0, None).mean()) if (curve >= 0).any() else float("nan") for curve in curves]
    return curves, aps


def plot_pr_curves(
    recall: np.ndarray, precision: np.ndarray, names: Sequence[str], aps: Sequence[float], path: Path
) -> Path:
    """One precision-recall curve per class at IoU 0.5 (COCO's interpolated precision, 101 recall points)."""
    figure = Figure(figsize=(7, 5.5), layout="constrained")
    ax = figure.subplots()
    for curve, name, ap in zip(precision, names, aps, strict=True):
        valid = curve >= 0
        ax.plot(recall[valid], curve[valid], label=f"{name} (AP@0.5 {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.02))
    ax.set_title("precision-recall per class at IoU 0.5 (test canvases)")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    return save(figure, path)


def evaluate_detection(model: Any, out: Path, device: torch.device, batch_size: int) -> dict[str, Any]:
    """Detect on every test canvas; write the figures, per_class_ap.csv and per-image recall; the metrics."""
    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)  # its 12-line summary: we write our own
    datamodule = model.datamodule
    datamodule.setup("test")
    canvases = datamodule.test_set.canvases
    detections = run_detector(model.net, canvases.images, datamodule.normalize, device, batch_size)
    targets = detection_targets(canvases.boxes, canvases.labels)
    metric = MeanAveragePrecision(
        box_format="xyxy", class_metrics=True, extended_summary=True, backend="faster_coco_eval"
    )
    metric.update(detections, targets)
    values = metric.compute()
    names = model.class_names
    classes = values["classes"].tolist()
    precision_50, ap_50 = precision_at_50(values)
    per_class = [
        {"class": names[c], "ap": float(ap), "ap_50": ap50, "objects": int((canvases.labels == c).sum())}
        for c, ap, ap50 in zip(classes, values["map_per_class"].tolist(), ap_50, strict=True)
    ]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "per_class_ap.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["class", "ap", "ap_50", "objects"])
        writer.writeheader()
        writer.writerows(per_class)
    recalls = [image_recall(d, t) for d, t in zip(detections, targets, strict=True)]
    with (out / "image_recall.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["test_canvas", "objects", "recall"])
        writer.writerows(
            [i, len(t["labels"]), f"{r:.4f}"] for i, (t, r) in enumerate(zip(targets, recalls, strict=True))
        )
    recall_points = np.linspace(0, 1, precision_50.shape[1])
    shown = list(range(min(SHOWN, len(detections))))
    worst = sorted(range(len(recalls)), key=lambda i: (recalls[i], -len(targets[i]["labels"])))[:SHOWN]

    def titles(indices: list[int]) -> list[str]:
        return [f"#{i}: recall {recalls[i]:.2f} of {len(targets[i]['labels'])}" for i in indices]

    legend = (
        f"green dashed: true boxes; detections scoring >= {DISPLAY_SCORE}: blue where they match one "
        f"(same class, IoU >= {MATCH_IOU}), red where they do not"
    )
    pictures = {
        "detections": plot_detections(
            canvases.images[shown],
            [detections[i] for i in shown],
            [targets[i] for i in shown],
            names,
            titles(shown),
            out / "detections.png",
            f"test canvases 0-{len(shown) - 1}; {legend}",
        ),
        "pr_curves": plot_pr_curves(
            recall_points, precision_50, [names[c] for c in classes], ap_50, out / "pr_curves.png"
        ),
        "worst": plot_detections(
            canvases.images[worst],
            [detections[i] for i in worst],
            [targets[i] for i in worst],
            names,
            titles(worst),
            out / "worst.png",
            f"the {len(worst)} test canvases of lowest recall; {legend}",
        ),
    }
    metrics = {
        "task": "detect",
        "images": len(detections),
        "objects": int((canvases.labels >= 0).sum()),
        "map": float(values["map"]),
        "map_50": float(values["map_50"]),
        "map_75": float(values["map_75"]),
        "mean_image_recall": float(np.mean(recalls)),
        "per_class": per_class,
        "worst_images": [{"test_canvas": i, "recall": recalls[i]} for i in worst],
    }
    return {"metrics": metrics, "pictures": pictures}


def summary_line(metrics: dict[str, Any]) -> str:
    worst = min(metrics["per_class"], key=lambda row: row["ap_50"], default=None)
    weakest = f"; weakest class {worst['class']} (AP@0.5 {worst['ap_50']:.3f})" if worst else ""
    return (
        f"{metrics['model']} on {metrics['dataset']} ({Path(metrics['checkpoint']).name}): test mAP "
        f"{metrics['map']:.4f}, mAP@0.5 {metrics['map_50']:.4f}, mAP@0.75 {metrics['map_75']:.4f} on "
        f"{metrics['images']:,} canvases ({metrics['objects']:,} objects){weakest} -> {metrics['output_dir']}"
    )
