"""A trained classifier back from its checkpoint: the network, its data and the run it came from.

Training stores the fully resolved run config in every checkpoint (``cnnlab_config``), so the
checkpoint alone rebuilds the exact model and the exact input normalisation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from torch import nn

from cnnlab.data import ImageDataModule
from cnnlab.errors import CheckpointError, reason_of
from cnnlab.models.build import instantiate_model
from cnnlab.runs.record import RUN_RECORD, read_run_record, resolve_checkpoint_path
from cnnlab.tasks import Task, task_of_model

log = logging.getLogger(__name__)

STATE_PREFIX = "net."  # ClassifierModule keeps the architecture under .net


@dataclass
class TrainedModel:
    """A network in eval mode and the data module it was trained with (normalisation, classes, test set)."""

    net: nn.Module
    datamodule: ImageDataModule
    config: dict[str, Any]
    checkpoint_path: Path
    run_dir: Path | None
    epoch: int
    global_step: int

    @property
    def model_name(self) -> str:
        return str(self.config["model"]["_target_"]).rsplit(".", 1)[-1]

    @cached_property
    def record(self) -> dict[str, Any]:
        """The run's record (metrics.json); empty for a checkpoint outside a run directory or without one."""
        if self.run_dir is None or not (self.run_dir / RUN_RECORD).is_file():
            return {}
        return read_run_record(self.run_dir)

    @cached_property
    def archived(self) -> bool:
        """Published with ``python -m results archive`` (its record says where it came from): read-only."""
        return "archived_from" in self.record

    @property
    def class_names(self) -> list[str]:
        return self.datamodule.classes

    @cached_property
    def task(self) -> Task:
        return task_of_config(self.config, self.checkpoint_path)


def task_of_config(config: dict[str, Any], path: Path | None = None) -> Task:
    """The task of a checkpoint's model, from its class (the ``_target_`` of its saved config)."""
    target = str(config["model"].get("_target_", ""))
    try:
        model_class = get_class(target)
    except Exception as error:  # Hydra wraps the ImportError / AttributeError of a moved or renamed class
        raise CheckpointError(
            f"{path or 'the checkpoint'} names the model class {target}, which cannot be imported "
            f"({reason_of(error)}); use the cnnlab version that trained it"
        ) from error
    return task_of_model(model_class)


def run_dir_of(checkpoint_path: Path) -> Path | None:
    """The run directory a checkpoint was written into (<run>/checkpoints/x.ckpt), if it is one; an
    archived run (``python -m results archive``) keeps its model.ckpt beside its record."""
    parent = checkpoint_path.resolve().parent
    if (parent / RUN_RECORD).is_file():
        return parent
    if parent.name == "checkpoints" and (
        (parent.parent / RUN_RECORD).is_file() or (parent.parent / ".hydra").is_dir()
    ):
        return parent.parent
    return None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded without executing code (``weights_only``)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file fails anywhere in the unpickler, with any exception type
        raise CheckpointError(
            f"{path} is corrupt or truncated, or not a PyTorch checkpoint (reading it failed with "
            f"{reason_of(error)}); pass another checkpoint of the run (its checkpoints/last.ckpt or "
            "epoch_*.ckpt), or train it again"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict)")
    if "cnnlab_config" not in checkpoint:
        raise CheckpointError(
            f"{path} has no cnnlab_config: it was not written by `python -m train`, so its model and data "
            "cannot be rebuilt"
        )
    return checkpoint


def architecture_only(model_config: dict[str, Any]) -> dict[str, Any]:
    """The model config without its training-time initialisation: the checkpoint replaces every weight.

    A pretrained model (``weights: IMAGENET1K_V1``) is rebuilt from random weights, so loading a
    checkpoint needs neither the download nor the cached file; freezing only matters to training.
    """
    rebuilt = dict(model_config)
    if rebuilt.get("weights") is not None:
        rebuilt["weights"] = None
    if rebuilt.get("freeze_backbone"):
        rebuilt["freeze_backbone"] = False
    return rebuilt


def load_trained_model(
    path: str | Path | None,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    tasks: Sequence[str] | None = None,
    purpose: str = "this tool",
) -> TrainedModel:
    """Rebuild the network and data module of a training checkpoint.

    ``dataset``: the dataset the caller expects (a mismatch is an error); ``data_root``: where the
    data files are now, when not where training read them; ``tasks``: the tasks the caller handles
    (``purpose`` names the caller in the error), None for any.
    """
    path = resolve_checkpoint_path(path)
    return rebuild_trained_model(path, read_checkpoint(path), dataset, data_root, tasks, purpose)


def rebuild_trained_model(
    path: Path,
    checkpoint: dict[str, Any],
    dataset: str | None = None,
    data_root: str | Path | None = None,
    tasks: Sequence[str] | None = None,
    purpose: str = "this tool",
) -> TrainedModel:
    """``load_trained_model`` of a checkpoint already read (``read_checkpoint``) from ``path``."""
    config: dict[str, Any] = checkpoint["cnnlab_config"]
    task = task_of_config(config, path).name
    if tasks is not None and task not in tasks:
        model = str(config["model"]["_target_"]).rsplit(".", 1)[-1]
        raise CheckpointError(
            f"{path} is a {task} checkpoint ({model} on {config['data']['name']}), but {purpose} takes "
            f"{' or '.join(tasks)} checkpoints only; pass a checkpoint of a {'/'.join(tasks)} run"
        )
    trained_on = config["data"]["name"]
    if dataset is not None and dataset != trained_on:
        raise CheckpointError(
            f"{path} was trained on data={trained_on}, not data={dataset}; "
            f"drop the data= override or pick a checkpoint trained on {dataset}"
        )
    data_config = OmegaConf.create(config["data"])
    if data_root is not None:
        data_config.root = str(data_root)
    datamodule: ImageDataModule = instantiate(data_config)
    net = instantiate_model(OmegaConf.create({"model": architecture_only(config["model"])}))
    state = {
        key.removeprefix(STATE_PREFIX): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(STATE_PREFIX)
    }
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(
            f"the weights in {path} do not fit its {config['model']['_target_']} config: "
            f"{str(error).splitlines()[0]}"
        ) from error
    net.eval()
    return TrainedModel(
        net=net,
        datamodule=datamodule,
        config=config,
        checkpoint_path=path,
        run_dir=run_dir_of(path),
        epoch=int(checkpoint.get("epoch", 0)),
        global_step=int(checkpoint.get("global_step", 0)),
    )


def initialise_backbone(net: nn.Module, ckpt_path: str | Path) -> None:
    """Load a trained classifier's conv stages into a detector's or U-Net's backbone."""
    classifier = load_trained_model(ckpt_path, tasks=("classify",), purpose="model.backbone_ckpt")
    backbone = net.backbone
    stages = getattr(classifier.net, "stages", None)
    first_conv = next((p for p in classifier.net.parameters() if p.dim() == 4), None)
    if stages is None or first_conv is None:
        raise CheckpointError(
            f"model.backbone_ckpt={classifier.checkpoint_path} holds a {classifier.model_name}, which has no "
            f"conv stages; pass a {backbone.name} classifier"
        )
    backbone.load_classifier_stages(
        classifier.net.state_dict(), str(classifier.checkpoint_path), int(first_conv.shape[1])
    )
    log.info("backbone initialised from %s (%s)", classifier.checkpoint_path, classifier.model_name)
