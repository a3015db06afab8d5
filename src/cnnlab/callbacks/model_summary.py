"""The per-layer parameter table printed when training starts."""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelSummary, RichModelSummary

from cnnlab.callbacks.progress_bar import in_terminal


def model_summary(max_depth: int = -1) -> ModelSummary:
    """Rich in a terminal, plain text elsewhere (a live Rich table floods a log file)."""
    return RichModelSummary(max_depth=max_depth) if in_terminal() else ModelSummary(max_depth=max_depth)
