"""A network from its config, checked against the data it will see."""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cnnlab.errors import ConfigError

# The model options any model config may set that the run reads, not the model class: the layout
# (``channels_last``, a model option in runs recorded before it became the run's), the checkpoint metric
# (``monitor``, read by conf/callbacks) and the backbone's initialisation (``backbone_ckpt``, loaded by the
# pipeline). A model config lists options of its own under RUN_OPTIONS_KEY.
RUN_OPTIONS = ("channels_last", "monitor", "backbone_ckpt")
RUN_OPTIONS_KEY = "_run_options_"


def instantiate_model(cfg: DictConfig) -> Any:
    """The model the config names, given its class arguments only (not the run options above)."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    own_options = model_cfg.pop(RUN_OPTIONS_KEY, None) or ()
    for option in (*RUN_OPTIONS, *own_options):
        model_cfg.pop(option, None)
    return instantiate(model_cfg)


def count_parameters(net: nn.Module) -> int:
    return sum(parameter.numel() for parameter in net.parameters())


def check_input_shape(net: nn.Module, shape: tuple[int, int, int], num_classes: int, dataset: str) -> None:
    """Fail early, with the fix, when the model cannot take this dataset's images."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            logits = net(torch.zeros(2, *shape))
    except RuntimeError as error:
        reason = str(error).splitlines()[0]
        raise ConfigError(
            f"the model cannot take data={dataset} images of shape {shape} (C, H, W): {reason}; "
            "remove model.in_channels / model.image_size overrides so the model takes its shape "
            "from the data"
        ) from error
    finally:
        net.train(was_training)
    if tuple(logits.shape) != (2, num_classes):
        raise ConfigError(
            f"the model outputs {tuple(logits.shape[1:])} per image but data={dataset} has "
            f"{num_classes} classes; remove the model.num_classes override"
        )
