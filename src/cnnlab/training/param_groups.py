"""Optimizer parameter groups: LR scales chosen by the network, no weight decay on norms and biases.

A network may define ``param_groups()`` returning torch-style groups (``{"params": [...], ...}``) with
an optional ``lr_scale``: the factor applied to the optimizer's LR for that group (transfer learning
trains a pretrained backbone slower than its new head). Frozen parameters are left out.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.optim import Optimizer

from cnnlab.errors import ConfigError


def parameter_groups(net: nn.Module, decay_norm_and_bias: bool = True) -> list[dict[str, Any]]:
    """The trainable parameters of ``net`` as optimizer groups.

    ``decay_norm_and_bias=False`` puts 1-d parameters (BatchNorm scales and shifts, biases) in groups
    with ``weight_decay=0``: decaying them does not regularise the function (BN makes the next layer
    scale-invariant) and can only hurt (as in Goyal et al. 2017 and most ImageNet recipes since).
    """
    declared = net.param_groups() if hasattr(net, "param_groups") else [{"params": list(net.parameters())}]
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    grouped = [id(p) for group in declared for p in group["params"] if p.requires_grad]
    if sorted(grouped) != sorted(trainable):
        raise ValueError(f"{type(net).__name__}.param_groups() must list every trainable parameter once")
    if not trainable:
        raise ConfigError("the model has no trainable parameters; unfreeze some (e.g. model.freeze_backbone)")
    groups: list[dict[str, Any]] = []
    for group in declared:
        params = [p for p in group["params"] if p.requires_grad]
        options = {key: value for key, value in group.items() if key != "params"}
        if decay_norm_and_bias:
            groups.append({"params": params, **options})
        else:
            groups.append({"params": [p for p in params if p.ndim > 1], **options})
            groups.append({"params": [p for p in params if p.ndim <= 1], **options, "weight_decay": 0.0})
    return [group for group in groups if group["params"]]


def apply_lr_scales(optimizer: Optimizer) -> None:
    """Scale each group's LR by its ``lr_scale`` (and weight decay by ``weight_decay_scale``); call it
    before a scheduler records the initial LRs."""
    for group in optimizer.param_groups:
        group["lr"] *= group.get("lr_scale", 1.0)
        if "weight_decay" in group:
            group["weight_decay"] *= group.get("weight_decay_scale", 1.0)
