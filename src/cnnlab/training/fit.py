"""Fitting a network with Lightning: the module and trainer from the config, fit, test the best checkpoint."""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from cnnlab.callbacks.epochs_to_accuracy import EpochsToAccuracy
from cnnlab.callbacks.train_time import TrainTime
from cnnlab.data import ImageDataModule
from cnnlab.data.canvas import CanvasDataModule
from cnnlab.errors import ConfigError, reason_of
from cnnlab.models.build import check_input_shape, count_parameters
from cnnlab.runs import resume
from cnnlab.runs.preflight import check_accelerator
from cnnlab.runs.record import (
    current_choices,
    device_name,
    hparam_metrics,
    hparams,
    hydra_choice,
    task_overrides,
)
from cnnlab.training.detection import DetectionModule
from cnnlab.training.lr_finder import find_learning_rate
from cnnlab.training.module import ClassifierModule, TrainingModule
from cnnlab.training.precision import resolve_precision
from cnnlab.training.segmentation import SegmentationModule

log = logging.getLogger(__name__)

# fit_network's result keys for the evaluation that follows, not for the run record: the test loop's
# (logits, labels), and the run's open TensorBoard logger (one event file for training and evaluation)
TEST_PREDICTIONS = "test_predictions"
TENSORBOARD = "tensorboard_logger"


# the LightningModule of each task other than classification, and the record fields of its test figures
TASK_MODULES: dict[str, type[TrainingModule]] = {"detect": DetectionModule, "segment": SegmentationModule}
TASK_RECORDS = {
    "detect": {"best_val": "best_val_map_50", "test/map": "test_map", "test/map_50": "test_map_50"},
    "segment": {"best_val": "best_val_miou", "test/miou": "test_miou", "test/pixel_acc": "test_pixel_acc"},
}


def instantiate_all(section: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config section (callbacks, loggers); empty gives []."""
    if not section:
        return []
    return [instantiate(entry) for entry in section.values() if entry and "_target_" in entry]


def _without_validation(cfg: DictConfig) -> None:
    """data.val_size=0: keep the last epoch (nothing to select on), no early stopping, no val loop."""
    with open_dict(cfg):
        if cfg.get("callbacks"):
            if cfg.callbacks.get("early_stopping"):
                raise ConfigError("early stopping needs a validation set: set data.val_size > 0 or drop it")
            if cfg.callbacks.get("model_checkpoint"):
                cfg.callbacks.model_checkpoint.monitor = None
                cfg.callbacks.model_checkpoint.save_top_k = 1
        cfg.trainer.limit_val_batches = 0


def suggest_bf16_on_amx(trainer_cfg: DictConfig) -> None:
    """Log that bf16 autocast would be much faster where ``auto`` chose fp32 on a CPU with AMX.

    Not the default there: an fp32 run's recorded accuracy must reproduce when it is evaluated again.
    """
    if trainer_cfg.get("precision") != "auto" or resolve_precision(trainer_cfg) != "32-true":
        return
    is_supported = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private API, absent in some builds
    if is_supported and is_supported():
        log.info(
            "trainer.precision=auto chose 32-true; this CPU has AMX, where trainer.precision=bf16-mixed "
            "trains convolutions about 3x faster (docs/performance.md)"
        )


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


class DropLightningChatter(logging.Filter):
    """Lightning's start-up lines that say nothing about this run (tips, absent accelerators)."""

    NOISE = (
        "💡 Tip",
        "GPU available",
        "TPU available",
        "HPU available",
        "Trainer already configured with model summary",
        "Loading `train_dataloader` to estimate",
        "`Trainer.fit` stopped",
        "Restoring states from the checkpoint",
        "Loaded model weights from the checkpoint",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


def quiet_library_noise() -> None:
    """Print each Lightning log line once, drop its chatter, and hide warnings users cannot act on.

    The run's own first line names the device (see ``config_line``).
    """
    if logging.getLogger().handlers:
        # `import lightning` gives its logger its own console handler; under Hydra the root logger
        # already prints to the console and train.log, so every line would appear twice.
        logging.getLogger("lightning").handlers.clear()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropLightningChatter) for f in logger.filters):
            logger.addFilter(DropLightningChatter())
    # short runs: the training loss is logged per epoch anyway, and every log_every_n_steps steps
    warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # the COCO evaluator prints its whole 12-line summary at every validation
    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
    # testing a checkpoint of an EMA run: its state_dict already holds the averaged weights
    warnings.filterwarnings("ignore", message=r".*WeightAveraging callback, but loading a checkpoint outside")


def build_module(cfg: DictConfig, net: nn.Module, datamodule: ImageDataModule) -> ClassifierModule:
    """The LightningModule for ``net`` as the config describes it (also used by the benchmark)."""
    if hasattr(net, "initialize_from_data"):  # e.g. airbench's whitening layer, set from image statistics
        datamodule.setup("fit")
        sample = datamodule.train_set.split.images[datamodule.train_indices[:5000]]
        net.initialize_from_data(datamodule.normalize(sample))
    module = ClassifierModule(
        net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        num_classes=datamodule.num_classes,
        label_smoothing=cfg.loss.label_smoothing,
        decay_norm_and_bias=cfg.get("decay_norm_and_bias", True),
        tta=cfg.get("tta"),
    )
    module.example_input_array = torch.zeros(2, *datamodule.shape)  # in/out sizes in the model summary
    prepare_network(cfg, net, module)
    return module


def prepare_network(cfg: DictConfig, net: nn.Module, module: TrainingModule) -> None:
    """NHWC memory format for a convolutional net (``channels_last``), then ``torch.compile`` (``compile``).

    NHWC is the default because oneDNN's CPU convolutions and cuDNN's tensor-core kernels are both
    faster in it (docs/performance.md: 25-35 % per SmallCNN / SmallVGG step on 2 CPU cores).
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


def task_of(net: nn.Module) -> str:
    """classify, detect or segment: what the network predicts."""
    return getattr(net, "task", "classify")


def check_task_fits(task: str, datamodule: ImageDataModule | CanvasDataModule, model_name: str) -> None:
    """Detectors and U-Nets need canvases with boxes and masks; classifiers need whole-image labels."""
    canvases = isinstance(datamodule, CanvasDataModule)
    if task != "classify" and not canvases:
        raise ConfigError(
            f"model={model_name} ({task}) needs boxes and masks, which data={datamodule.name} does not have; "
            "use data=mnist_canvas or data=fashion_canvas"
        )
    if task == "classify" and canvases:
        raise ConfigError(
            f"model={model_name} classifies whole images, but data={datamodule.name} holds canvases of "
            "several objects; use model=detector or model=unet, or a classification dataset (data=mnist)"
        )


def build_task_module(cfg: DictConfig, net: nn.Module, datamodule: CanvasDataModule) -> TrainingModule:
    """The detection or segmentation module for ``net``, with the same optimizer and schedule options."""
    module = TASK_MODULES[task_of(net)](
        net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        num_classes=datamodule.num_classes,
        decay_norm_and_bias=cfg.get("decay_norm_and_bias", True),
        class_names=datamodule.classes,
    )
    module.example_input_array = torch.zeros(2, *datamodule.shape)
    prepare_network(cfg, net, module)
    return module


def task_record(task: str, best_score: Any, test_metrics: dict[str, float]) -> dict[str, Any]:
    """The record fields of a detection or segmentation run (none for classification)."""
    if task == "classify":
        return {"task": task}
    fields = TASK_RECORDS[task]
    record: dict[str, Any] = {"task": task, "best_val_acc": None, "test_acc": None, "test_f1_macro": None}
    record[fields["best_val"]] = float(best_score) if best_score is not None else None
    record.update({name: test_metrics.get(key) for key, name in fields.items() if key != "best_val"})
    record["per_class_test"] = {
        key.split("/", 1)[1]: value for key, value in test_metrics.items() if key.count("/") == 2
    }
    return record


def fit_network(
    cfg: DictConfig, net: nn.Module, datamodule: ImageDataModule, output_dir: Path
) -> dict[str, Any] | None:
    """Train a neural network with Lightning, test its best checkpoint; the run-specific record fields.

    None when the run only finds the LR (``lr_find.enabled`` without ``lr_find.apply``).
    """
    if cfg.trainer.get("max_epochs") is not None and 0 <= cfg.trainer.max_epochs < 1:
        raise ConfigError(f"trainer.max_epochs={cfg.trainer.max_epochs} trains nothing; use 1 or more")
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    if not datamodule.has_validation:
        _without_validation(cfg)
    task = task_of(net)
    check_task_fits(task, datamodule, hydra_choice("model", type(net).__name__.lower()))
    if task == "classify":
        check_input_shape(net, datamodule.shape, datamodule.num_classes, datamodule.name)
        module = build_module(cfg, net, datamodule)
    else:
        module = build_task_module(cfg, net, datamodule)
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
    timer = TrainTime()  # the time trained before the checkpoint resumed from, if any
    callbacks.append(timer)
    loggers: list[Logger] = instantiate_all(cfg.get("logger"))
    trainer = build_trainer(cfg.trainer, callbacks, loggers)

    log.info(config_line(cfg, datamodule, trainer))
    suggest_bf16_on_amx(cfg.trainer)
    fit_start = time.perf_counter()
    if cfg.get("ckpt_path"):  # resuming: set by resume.prepare_resume
        resume.check_checkpoint_fits(Path(cfg.ckpt_path), module)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    train_time = time.perf_counter() - fit_start
    # read before testing restores callback states from a checkpoint
    epochs_to_val_acc, trained_before = milestone.epochs, timer.before_s

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

    results = {
        "params": count_parameters(net),
        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "epochs": trainer.current_epoch,
        "max_epochs": cfg.trainer.max_epochs,
        "stopped_early": stopped_early,
        "train_time_s": round(trained_before + train_time, 2),
        # a resumed run: the time after the resume (train_time_s adds the checkpoint's)
        "train_time_resumed_s": round(train_time, 2) if cfg.get("ckpt_path") else None,
        "best_val_acc": float(best_score) if best_score is not None else None,
        "test_acc": test_metrics.get("test/acc"),
        "test_f1_macro": test_metrics.get("test/f1_macro"),
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
        TEST_PREDICTIONS: test_predictions,
        TENSORBOARD: next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None),
        **task_record(task, best_score, test_metrics),
    }
    run_hparams = hparams(resolved, current_choices(), task_overrides())
    if lr_found:  # trained with the LR finder's suggestion, not the config's
        run_hparams["lr"] = lr_found
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # the HParams tab pairs what sets runs apart with results
            logger.log_hyperparams(run_hparams, hparam_metrics(results))
        else:
            logger.log_hyperparams(run_hparams)
    return results


def tested_images(module: L.LightningModule, datamodule: Any) -> int | None:
    """The images the test loop saw, as the classifier counts them (a limited test loop sees fewer); the
    dense tasks' modules do not count, so their record gives the test set's size."""
    counted = getattr(module, "tested_images", None)
    if counted is not None:
        return counted
    return len(datamodule.test_set) if getattr(datamodule, "test_set", None) is not None else None


def config_line(cfg: DictConfig, datamodule: ImageDataModule, trainer: L.Trainer) -> str:
    """The run's choices in one line, printed before training starts."""
    lr = cfg.optimizer.get("lr")
    return (
        f"{hydra_choice('model', 'model')} on {datamodule.name}: {hydra_choice('optimizer', 'optimizer')}"
        f"{f' lr {lr:g}' if isinstance(lr, (int, float)) else ''}, {hydra_choice('scheduler', 'none')} "
        f"schedule, {cfg.trainer.max_epochs} epoch{'' if cfg.trainer.max_epochs == 1 else 's'} of batch "
        f"{datamodule.batch_size}, seed {cfg.seed}, "
        f"on {device_name(trainer.strategy.root_device)} ({trainer.precision}) -> {cfg.paths.output_dir}"
    )
