"""Ablation presets: each expands into the intended Hydra multirun jobs (composed, never trained)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from tests.conftest import CONF


def sweep_jobs(experiment: str, *overrides: str) -> list[DictConfig]:
    """The configs of the jobs ``python -m train --multirun experiment=<name>`` would run, in order."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        base = [f"experiment={experiment}", *overrides]
        params = compose("train", base, return_hydra_config=True).hydra.sweeper.params
        parsed = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
        (jobs,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
        return [compose("train", [*base, *job]) for job in jobs]


def test_ablation_bn_is_smallcnn_with_and_without_bn_for_three_seeds() -> None:
    jobs = sweep_jobs("ablation_bn")
    assert len(jobs) == 6
    assert sorted((job.model.batch_norm, job.seed) for job in jobs) == sorted(
        (bn, seed) for bn in (True, False) for seed in (0, 1, 2)
    )
    assert all(job.model._target_.endswith("SmallCNN") and job.trainer.max_epochs == 15 for job in jobs)
    assert all(job.val_acc_target == 0.7 and job.data.name == "cifar10" for job in jobs)


def test_ablation_augmentation_goes_from_none_to_crop_flip_to_mixup_and_cutmix() -> None:
    jobs = sweep_jobs("ablation_augmentation")
    variants = [(len(job.data.augment), job.data.mixup_alpha, job.data.cutmix_alpha) for job in jobs]
    assert variants == [(0, 0.0, 0.0), (2, 0.0, 0.0), (2, 0.2, 0.0), (2, 0.0, 1.0)]


def test_ablation_optimizer_compares_sgd_adam_adamw_at_their_usual_lr() -> None:
    jobs = sweep_jobs("ablation_optimizer")
    setups = [(job.optimizer._target_.rsplit(".", 1)[-1], job.optimizer.lr) for job in jobs]
    assert setups == [("SGD", 0.1), ("Adam", 1e-3), ("AdamW", 1e-3)]
    assert jobs[0].optimizer.nesterov and all(job.scheduler._target_.endswith("cosine") for job in jobs)


def test_ablation_regularisation_adds_each_regulariser_then_all_on_smallvgg() -> None:
    jobs = sweep_jobs("ablation_regularisation")
    settings = [
        (job.model.dropout, job.loss.label_smoothing, job.data.mixup_alpha, job.data.cutmix_alpha)
        for job in jobs
    ]
    assert settings == [
        (0.0, 0.0, 0.0, 0.0),
        (0.3, 0.0, 0.0, 0.0),
        (0.0, 0.1, 0.0, 0.0),
        (0.0, 0.0, 0.2, 0.0),
        (0.0, 0.0, 0.0, 1.0),
        (0.3, 0.1, 0.2, 1.0),
    ]
    assert all(job.model._target_.endswith("SmallVGG") for job in jobs)


def test_depth_compares_resnet18_and_resnet34() -> None:
    jobs = sweep_jobs("depth")
    assert [list(job.model.blocks) for job in jobs] == [[2, 2, 2, 2], [3, 4, 6, 3]]


@pytest.mark.parametrize(
    ("experiment", "count"),
    [
        ("ablation_bn", 6),
        ("ablation_augmentation", 4),
        ("ablation_optimizer", 3),
        ("ablation_regularisation", 6),
        ("depth", 2),
    ],
)
def test_presets_still_take_command_line_overrides(experiment: str, count: int) -> None:
    jobs = sweep_jobs(experiment, "data=mnist", "trainer.max_epochs=1")
    assert len(jobs) == count
    assert all(
        job.data.name == "mnist" and job.model.in_channels == 1 and job.trainer.max_epochs == 1
        for job in jobs
    )
