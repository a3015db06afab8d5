"""A network from its config, checked against the data it will see."""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cnnlab.errors import ConfigError

NOT_CLASS_ARGUMENTS = ("channels_last", "monitor", "backbone_ckpt")


def instantiate_model(cfg: DictConfig) -> Any:
    """The model the config names, without the options that are not class arguments: the layout
    (``channels_last``, a model option in runs recorded before it became the run's), the task's
    checkpoint metric (``monitor``) and the backbone's initialisation (``backbone_ckpt``, loaded by
    the pipeline)."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    for option in NOT_CLASS_ARGUMENTS:
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
