"""The progress bar: Rich in a terminal, plain TQDM elsewhere.

Rich redraws live displays that turn into thousands of wrapped lines when stdout is a file
(CI, nohup, a pipe), so without a terminal the plain Lightning equivalent is used.
"""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar


def in_terminal() -> bool:
    return sys.stdout.isatty()


def progress_bar(refresh_rate: int = 1) -> ProgressBar:
    """Rich bar in a terminal; a TQDM bar refreshed every 100 batches at most elsewhere."""
    if in_terminal():
        return RichProgressBar(refresh_rate=refresh_rate)
    return TQDMProgressBar(refresh_rate=max(refresh_rate, 100))
