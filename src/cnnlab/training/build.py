"""What a fit is made of, built from the run config: the task's LightningModule around the network (in
its memory format, compiled or not), the callbacks and loggers, and the Trainer."""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, open_dict
from torch import nn

from cnnlab.errors import ConfigError, reason_of
from cnnlab.runs.preflight import check_accelerator
from cnnlab.tasks import task_of_model
from cnnlab.training.module import TrainingModule
from cnnlab.training.precision import resolve_precision

log = logging.getLogger(__name__)


def instantiate_all(section: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config section (callbacks, loggers); empty gives []."""
    if not section:
        return []
    return [instantiate(entry) for entry in section.values() if entry and "_target_" in entry]


def without_validation(cfg: DictConfig) -> None:
    """data.val_size=0: keep the last epoch (nothing to select on), no early stopping, no val loop."""
    with open_dict(cfg):
        if cfg.get("callbacks"):
            if cfg.callbacks.get("early_stopping"):
                raise ConfigError("early stopping needs a validation set: set data.val_size > 0 or drop it")
            if cfg.callbacks.get("model_checkpoint"):
                cfg.callbacks.model_checkpoint.monitor = None
                cfg.callbacks.model_checkpoint.save_top_k = 1
        cfg.trainer.limit_val_batches = 0


def build_module(cfg: DictConfig, net: nn.Module, datamodule: Any) -> TrainingModule:
    """The LightningModule of ``net``'s task, as the config describes it (also used by the benchmark)."""
    module_class: type[TrainingModule] = task_of_model(net).resolve("module")
    module_class.check_network(net, datamodule)
    if hasattr(net, "initialize_from_data"):  # e.g. airbench's whitening layer, set from image statistics
        datamodule.setup("fit")
        sample = datamodule.train_set.split.images[datamodule.train_indices[:5000]]
        net.initialize_from_data(datamodule.normalize(sample))
    module = module_class(net, **module_class.config_options(cfg, datamodule))
    module.example_input_array = torch.zeros(2, *datamodule.shape)  # in/out sizes in the model summary
    if getattr(net, "keeps_modules_in_eval", False):  # e.g. a frozen backbone: Lightning's warning is noise
        warnings.filterwarnings(
            "ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training"
        )
    prepare_network(cfg, net, module)
    return module


def prepare_network(cfg: DictConfig, net: nn.Module, module: TrainingModule) -> None:
    """NHWC memory format for a convolutional net (``channels_last``), then ``torch.compile`` (``compile``).

    NHWC is the default because oneDNN's CPU convolutions and cuDNN's tensor-core kernels are both
    faster in it (docs/performance.md).
    """
    channels_last = cfg.get("channels_last")
    legacy = cfg.get("model", {}).get("channels_last")  # a model option before it became the run's
    if legacy is not None:
        log.info("model.channels_last=%s is the run option channels_last now: using it", legacy)
        channels_last = legacy
    if channels_last and any(isinstance(layer, nn.Conv2d) for layer in net.modules()):
        net.to(memory_format=torch.channels_last)
        module.channels_last = True
    if cfg.get("compile"):
        compile_network(net)


def compile_network(net: nn.Module) -> None:
    """torch.compile the network in place (state-dict keys unchanged), or say why not and go on."""
    if not torch._dynamo.is_dynamo_supported():
        log.warning(
            "compile=true: torch.compile is not supported on this Python/platform; training uncompiled"
        )
        return
    if not torch.cuda.is_available() and shutil.which(os.environ.get("CXX", "g++")) is None:
        log.warning("compile=true: torch.compile on the CPU needs a C++ compiler (g++); training uncompiled")
        return
    net.compile()


def build_trainer(trainer_cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger]) -> L.Trainer:
    """The Lightning Trainer of the config; a setting Lightning rejects (e.g. a GPU where there is none) is a
    ConfigError."""
    try:
        return instantiate(
            trainer_cfg,
            callbacks=callbacks,
            logger=loggers or False,
            precision=resolve_precision(trainer_cfg),
        )
    except Exception as error:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, MisconfigurationException):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        # an unknown accelerator, or one this machine lacks (Lightning's view): the message python -m train
        # gives before the imports
        available = [
            name
            for name in AcceleratorRegistry.available_accelerators()
            if AcceleratorRegistry[name]["accelerator"].is_available()
        ]
        if "cuda" in available:
            available.append("gpu")  # Lightning's other name for it
        check_accelerator(trainer_cfg.get("accelerator", "auto"), available)
        raise ConfigError(
            f"Lightning rejects the trainer settings ({reason_of(cause)}); fix the trainer.* overrides"
        ) from error
