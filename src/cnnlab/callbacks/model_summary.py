"""The parameter table printed when training starts: the network's top-level blocks, no metric objects."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, RichModelSummary
from torchmetrics import Metric, MetricCollection

from cnnlab.callbacks.progress_bar import in_terminal


class _WithoutMetricRows:
    """Drops the rows of torchmetrics objects: they hold no parameters, only noise (a dozen rows)."""

    def _summary(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
        summary = super()._summary(trainer, pl_module)  # type: ignore[misc]
        layers = getattr(summary, "_layer_summary", None)  # Lightning's per-row table, name -> LayerSummary
        if layers is not None:
            summary._layer_summary = OrderedDict(
                (name, layer)
                for name, layer in layers.items()
                if not isinstance(layer._module, (Metric, MetricCollection))
            )
        return summary


class NetworkSummary(_WithoutMetricRows, ModelSummary):
    """Plain-text table of the network's modules down to ``max_depth``."""


class RichNetworkSummary(_WithoutMetricRows, RichModelSummary):
    """The same table drawn with Rich."""


def model_summary(max_depth: int = 2) -> ModelSummary:
    """Rich in a terminal, plain text elsewhere (a live Rich table floods a log file).

    ``max_depth=2``: the network and its top-level blocks (``net.stages``, ``net.head``); -1 lists
    every layer.
    """
    summary = RichNetworkSummary if in_terminal() else NetworkSummary
    return summary(max_depth=max_depth)
