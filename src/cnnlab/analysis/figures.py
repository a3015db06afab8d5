"""Figures of a classifier's behaviour, written as PNG files (matplotlib, no display needed).

Every function takes plain arrays / tensors and a path, so neural and classical models share them.
Images are float tensors in [0, 1], (C, H, W) with C = 1 (shown in grey) or 3 (colour).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay
from torchvision.utils import make_grid

DPI = 110
MAX_ANNOTATED_CLASSES = 20  # beyond this the numbers in the cells are unreadable


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def show_image(ax: Axes, image: torch.Tensor | np.ndarray) -> None:
    """Draw a (C, H, W) image in [0, 1] without axes; one channel in grey."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.shape[0] == 1:
        ax.imshow(array[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(array.transpose(1, 2, 0), 0, 1), interpolation="nearest")
    ax.set_axis_off()


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """Counts (true rows, predicted columns) beside the row-normalised view (recall per class)."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = max(5.0, 0.5 * len(class_names) + 2)
    figure = Figure(figsize=(2 * size + 1, size), layout="constrained")
    annotate = len(class_names) <= MAX_ANNOTATED_CLASSES
    for ax, values, fmt, title in zip(
        figure.subplots(1, 2),
        (matrix, normalised),
        ("d", ".2f"),
        (f"counts ({int(matrix.sum()):,} images)", "row-normalised (fraction of each true class)"),
        strict=True,
    ):
        display = ConfusionMatrixDisplay(values, display_labels=list(class_names))
        display.plot(ax=ax, cmap="Blues", values_format=fmt, include_values=annotate, colorbar=True)
        display.im_.set_clim(0, values.max() if fmt == "d" else 1)
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=45)
    return save(figure, path)


def plot_errors(
    images: torch.Tensor,
    true_names: Sequence[str],
    predicted_names: Sequence[str],
    confidences: Sequence[float],
    indices: Sequence[int],
    path: Path,
) -> Path:
    """A grid of misclassified images titled with test index, true and predicted class and confidence."""
    count = len(images)
    columns = max(1, min(4, count))
    rows = max(1, math.ceil(count / columns))
    figure = Figure(figsize=(2.1 * columns, 2.4 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, true, predicted, confidence, index in zip(
        axes, images, true_names, predicted_names, confidences, indices, strict=False
    ):
        show_image(ax, image)
        ax.set_title(
            f"#{index}: true {true}\npred {predicted} ({confidence:.2f})", fontsize=9, color="firebrick"
        )
    if count == 0:
        axes[0].text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
    figure.suptitle("most confident mistakes (confidence = softmax probability of the prediction)")
    return save(figure, path)


def plot_filters(weights: torch.Tensor, path: Path, title: str) -> Path:
    """First-layer kernels (out, in, kh, kw) as a grid, each min-max normalised; RGB kernels in colour."""
    kernels = weights.detach().float().cpu()
    if kernels.shape[1] not in (1, 3):
        kernels = kernels.mean(dim=1, keepdim=True)  # no colour mapping for other channel counts
    low = kernels.amin(dim=(1, 2, 3), keepdim=True)
    high = kernels.amax(dim=(1, 2, 3), keepdim=True)
    kernels = (kernels - low) / (high - low).clamp_min(1e-12)
    count = len(kernels)
    columns = 2 ** math.ceil(math.log2(math.sqrt(count))) if count > 1 else 1
    rows = math.ceil(count / columns)
    grid = make_grid(kernels, nrow=columns, padding=1, pad_value=1.0)  # white lines between kernels
    figure = Figure(figsize=(0.6 * columns + 0.6, 0.6 * rows + 0.9), layout="constrained")
    show_image(figure.subplots(), grid)
    figure.suptitle(title)
    return save(figure, path)


def plot_feature_maps(
    image: torch.Tensor,
    activations: Sequence[tuple[str, torch.Tensor]],
    path: Path,
    caption: str,
    channels: int = 16,
) -> Path:
    """The input, then per stage its ``channels`` most active (C, H, W) output maps side by side.

    Each map is min-max scaled on its own, so the pattern of every channel is visible.
    """
    figure = Figure(figsize=(12, 1.0 + 1.1 * (len(activations) + 1)), layout="constrained")
    axes = figure.subplots(len(activations) + 1, 1, squeeze=False)[:, 0]
    show_image(axes[0], image)
    axes[0].set_title("input", fontsize=9)
    for ax, (name, activation) in zip(axes[1:], activations, strict=True):
        strongest = activation.mean(dim=(1, 2)).argsort(descending=True)[:channels]
        maps = activation[strongest]
        low = maps.amin(dim=(1, 2), keepdim=True)
        maps = (maps - low) / (maps.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-12)
        grid = make_grid(maps.unsqueeze(1), nrow=channels, padding=1, pad_value=float("nan"))[0]
        ax.imshow(grid.numpy(), cmap="viridis", interpolation="nearest")
        ax.set_axis_off()
        shape = "x".join(str(s) for s in activation.shape)
        ax.set_title(f"{name} ({shape}): channels {', '.join(map(str, strongest.tolist()))}", fontsize=9)
    figure.suptitle(f"feature maps of {caption}: the {channels} most active channels of each stage")
    return save(figure, path)


def plot_class_evidence(
    images: torch.Tensor,
    maps: Sequence[Sequence[tuple[str, torch.Tensor]]],
    row_titles: Sequence[str],
    path: Path,
) -> Path:
    """Each image beside its heat maps (e.g. Grad-CAM for the true and the predicted class).

    The maps of one row share a colour scale, so stronger evidence for one class shows as brighter.
    """
    columns = 1 + max((len(row) for row in maps), default=0)
    figure = Figure(figsize=(2.0 * columns + 1.2, 2.1 * len(images) + 0.5), layout="constrained")
    axes = figure.subplots(len(images), columns, squeeze=False)
    for axes_row, image, row_maps, title in zip(axes, images, maps, row_titles, strict=True):
        show_image(axes_row[0], image)
        axes_row[0].set_title(title, fontsize=8)
        scale = max((float(heat.max()) for _, heat in row_maps), default=0.0) or 1.0
        grey = image.mean(dim=0).numpy()
        for ax, (map_title, heat) in zip(axes_row[1:], row_maps, strict=False):
            ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.imshow(heat.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=scale, interpolation="bilinear")
            ax.set_title(map_title, fontsize=8)
            ax.set_axis_off()
    figure.suptitle("Grad-CAM: where the network finds evidence for a class (red = strong)")
    return save(figure, path)
