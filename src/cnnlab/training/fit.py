"""Fitting a network with Lightning: fit, test the best checkpoint, and the record fields of both
(the module and trainer are built in ``training/build.py``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, Timer
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cnnlab.callbacks.epochs_to_accuracy import EpochsToAccuracy
from cnnlab.errors import ConfigError
from cnnlab.loggers import log_run_hparams
from cnnlab.models.build import count_parameters
from cnnlab.runs import resume
from cnnlab.runs.record import device_name, hydra_choice
from cnnlab.runs.run_record import RunRecord
from cnnlab.tasks import FitResult, task_of_model
from cnnlab.training.build import build_module, build_trainer, instantiate_all, without_validation
from cnnlab.training.lr_finder import find_learning_rate
from cnnlab.training.precision import resolve_precision, suggest_bf16_on_amx

log = logging.getLogger(__name__)


def fit_network(cfg: DictConfig, net: nn.Module, datamodule: Any, output_dir: Path) -> FitResult | None:
    """Train a neural network with Lightning and test its best checkpoint: the run-specific record fields,
    the test loop's predictions and the open TensorBoard logger.

    None when the run only finds the LR (``lr_find.enabled`` without ``lr_find.apply``).
    """
    if not isinstance(net, nn.Module):
        raise ConfigError(
            f"model={hydra_choice('model', '?')} builds a {type(net).__name__}, neither a torch module nor "
            "a classical baseline; check its _target_ in conf/model/"
        )
    if cfg.trainer.get("max_epochs") is not None and 0 <= cfg.trainer.max_epochs < 1:
        raise ConfigError(f"trainer.max_epochs={cfg.trainer.max_epochs} trains nothing; use 1 or more")
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    if not datamodule.has_validation:
        without_validation(cfg)
    task = task_of_model(net)
    task.check_data(datamodule, hydra_choice("model", type(net).__name__.lower()))
    module = build_module(cfg, net, datamodule)
    module.make_optimizer()  # a bad optimizer setting (optimizer.lr=abc) stops here, before training starts
    resolved = OmegaConf.to_container(cfg, resolve=True)
    module.run_config = resolved
    lr_found = None
    if cfg.get("lr_find") and (cfg.lr_find.enabled or cfg.lr_find.apply):
        lr_found = find_learning_rate(cfg, module, datamodule, output_dir, resolve_precision(cfg.trainer))
        if not cfg.lr_find.apply:
            return None
        module.lr = lr_found

    callbacks: list[Callback] = instantiate_all(cfg.get("callbacks"))
    milestone = EpochsToAccuracy(cfg.get("val_acc_target", 0.7))
    callbacks.append(milestone)
    timer = Timer()  # the training loop's time; a checkpoint carries it, so it adds up across resumes
    callbacks.append(timer)
    loggers: list[Logger] = instantiate_all(cfg.get("logger"))
    trainer = build_trainer(cfg.trainer, callbacks, loggers)

    log.info(config_line(cfg, datamodule, trainer))
    suggest_bf16_on_amx(cfg.trainer)
    if cfg.get("ckpt_path"):  # resuming: set by resume.prepare_resume
        resume.check_checkpoint_fits(Path(cfg.ckpt_path), module)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    # read before testing restores callback states from a checkpoint
    epochs_to_val_acc, trained = milestone.epochs, timer.time_elapsed("train")
    trained_here = timer.end_time("train") - timer.start_time("train")

    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best_path = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    best_score = checkpoint.best_model_score if checkpoint is not None and checkpoint.monitor else None
    if best_score is None and datamodule.has_validation and "val/acc" in trainer.callback_metrics:
        best_score = trainer.callback_metrics["val/acc"]  # no checkpointing: the last epoch's figure
    stopped_early = any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks)

    test_metrics: dict[str, float] = {}
    test_predictions = None
    if cfg.get("test", True):
        if best_path is None:
            log.warning("no checkpoint was saved: testing the final weights")
        trainer.test(module, datamodule=datamodule, ckpt_path=best_path, verbose=False)
        test_metrics = {
            key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("test/")
        }
        if trainer.world_size == 1:  # one process saw the whole test set, in order
            test_predictions = getattr(module, "test_predictions", None)  # classifiers keep them

    record: RunRecord = {
        "params": count_parameters(net),
        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "epochs": trainer.current_epoch,
        "max_epochs": cfg.trainer.max_epochs,
        "stopped_early": stopped_early,
        "train_time_s": round(trained, 2),
        # a resumed run: the time after the resume (train_time_s adds the checkpoint's)
        "train_time_resumed_s": round(trained_here, 2) if cfg.get("ckpt_path") else None,
        "test_loss": test_metrics.get("test/loss"),
        "tta": getattr(module, "tta", None),
        "test_tta_acc": test_metrics.get("test/tta_acc"),
        "test_tta_f1_macro": test_metrics.get("test/tta_f1_macro"),
        "epochs_to_val_acc": epochs_to_val_acc,
        "val_acc_target": milestone.target,
        "train_images": len(datamodule.train_set) if datamodule.train_set is not None else None,
        "val_images": datamodule.val_size,
        # the images tested (fewer than the test set's with trainer.limit_test_batches), and the test set's
        "test_images": tested_images(module, datamodule) if test_metrics else None,
        "test_set_images": len(datamodule.test_set) if datamodule.test_set is not None else None,
        "batch_size": datamodule.batch_size,
        "loader": getattr(
            datamodule, "loader_used", None
        ),  # the data path data.loader (auto by default) took
        "optimizer": hydra_choice("optimizer", cfg.optimizer._target_),
        "lr": lr_found or cfg.optimizer.get("lr"),
        "lr_find_suggestion": lr_found,
        "scheduler": hydra_choice("scheduler", "none"),
        "device": device_name(trainer.strategy.root_device),
        "precision": str(trainer.precision),
        "best_checkpoint": os.path.relpath(best_path, output_dir) if best_path else None,
        **task.record_fields(best_score, test_metrics),
    }
    log_run_hparams(trainer.loggers, resolved, record, lr_found)
    return FitResult(
        record,
        test_predictions=test_predictions,
        tensorboard=next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None),
    )


def tested_images(module: L.LightningModule, datamodule: Any) -> int | None:
    """The images the test loop saw, as the classifier counts them (a limited test loop sees fewer); the
    dense tasks' modules do not count, so their record gives the test set's size."""
    counted = getattr(module, "tested_images", None)
    if counted is not None:
        return counted
    return len(datamodule.test_set) if getattr(datamodule, "test_set", None) is not None else None


def config_line(cfg: DictConfig, datamodule: Any, trainer: L.Trainer) -> str:
    """The run's choices in one line, printed before training starts."""
    lr = cfg.optimizer.get("lr")
    return (
        f"{hydra_choice('model', 'model')} on {datamodule.name}: {hydra_choice('optimizer', 'optimizer')}"
        f"{f' lr {lr:g}' if isinstance(lr, (int, float)) else ''}, {hydra_choice('scheduler', 'none')} "
        f"schedule, {cfg.trainer.max_epochs} epoch{'' if cfg.trainer.max_epochs == 1 else 's'} of batch "
        f"{datamodule.batch_size}, seed {cfg.seed}, "
        f"on {device_name(trainer.strategy.root_device)} ({trainer.precision}) -> {cfg.paths.output_dir}"
    )
