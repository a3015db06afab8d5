"""Evaluation results into a run's TensorBoard log: figures as images, hparams with final metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.tensorboard import SummaryWriter


def log_evaluation(
    log_dir: Path,
    images: dict[str, Path],
    hparam_values: dict[str, Any],
    metrics: dict[str, float],
    step: int,
) -> None:
    """Log each PNG under its tag, and one HParams entry pairing the config with the metrics.

    Written into the run's own log directory, so the HParams table shows one row per run: this
    entry replaces the one training wrote and carries its test metrics along.
    """
    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for tag, path in images.items():
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            writer.add_image(tag, pixels, global_step=step, dataformats="HWC")
        # run_name=".": into this run's directory, not a timestamped sub-run
        writer.add_hparams(_scalars(hparam_values), metrics, run_name=".", global_step=step)


def _scalars(values: dict[str, Any]) -> dict[str, Any]:
    """HParams takes bool / int / float / str only."""
    return {
        key: value if isinstance(value, (bool, int, float, str)) else str(value)
        for key, value in values.items()
    }
