"""Evaluation results into a run's TensorBoard log: figures as images, hparams with final metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from cnnlab.loggers import hparams_summaries, swept_hparams


def log_evaluation(
    log_dir: Path | SummaryWriter,
    images: dict[str, Path],
    hparam_values: dict[str, Any],
    metrics: dict[str, float],
    step: int,
) -> None:
    """Log each PNG under its tag, and one HParams entry pairing the config with the metrics.

    ``log_dir``: the run's log folder, or the run's open writer (no second event file). Written into
    the run's own log, so the HParams table shows one row per run: this entry replaces the one
    training wrote and carries its test metrics along. Its columns mark what the run's sweep varies,
    as training's do (``swept_hparams``, from the run folder above ``log_dir``).
    """
    writer = log_dir if isinstance(log_dir, SummaryWriter) else SummaryWriter(log_dir=str(log_dir))
    try:
        for tag, path in images.items():
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            writer.add_image(tag, pixels, global_step=step, dataformats="HWC")
        # what SummaryWriter.add_hparams does, minus the extra writer (and event file) it opens
        file_writer = writer._get_file_writer()
        swept = swept_hparams(Path(writer.log_dir).parent)
        for summary in hparams_summaries(hparam_values, metrics, swept):
            file_writer.add_summary(summary, step)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, step)
        writer.flush()
    finally:
        if writer is not log_dir:
            writer.close()
