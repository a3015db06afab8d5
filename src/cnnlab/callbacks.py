"""Callback factories that pick Rich output in a terminal and plain output elsewhere.

Rich redraws live displays that turn into thousands of wrapped lines when stdout is a file
(CI, nohup, a pipe), so without a terminal the plain Lightning equivalents are used.
"""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import (
    ModelSummary,
    ProgressBar,
    RichModelSummary,
    RichProgressBar,
    TQDMProgressBar,
)


def _in_terminal() -> bool:
    return sys.stdout.isatty()


def progress_bar(refresh_rate: int = 1) -> ProgressBar:
    """Rich bar in a terminal; a TQDM bar refreshed every 100 batches at most elsewhere."""
    if _in_terminal():
        return RichProgressBar(refresh_rate=refresh_rate)
    return TQDMProgressBar(refresh_rate=max(refresh_rate, 100))


def model_summary(max_depth: int = -1) -> ModelSummary:
    """Per-layer parameter table: Rich in a terminal, plain text elsewhere."""
    return RichModelSummary(max_depth=max_depth) if _in_terminal() else ModelSummary(max_depth=max_depth)
