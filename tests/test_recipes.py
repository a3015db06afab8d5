"""Training recipes: MixUp / CutMix / erasing, parameter groups, TTA, LR finder, EMA, epochs-to-accuracy."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.data.batch_augment import BatchAugment
from cnnlab.errors import ConfigError
from cnnlab.models.smallcnn import SmallCNN
from cnnlab.training.module import ClassifierModule
from cnnlab.training.param_groups import parameter_groups
from cnnlab.training.schedulers import onecycle
from cnnlab.training.tta import tta_probabilities, views


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.2, 0.0), (0.0, 1.0), (0.2, 1.0)])
def test_mixing_gives_soft_targets_that_sum_to_one(mixup: float, cutmix: float) -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(16, 3, 8, 8), torch.arange(16) % 10
    mixed, targets = BatchAugment(10, mixup_alpha=mixup, cutmix_alpha=cutmix)(images, labels)
    assert mixed.shape == images.shape and targets.shape == (16, 10)
    assert targets.is_floating_point() and torch.allclose(targets.sum(dim=1), torch.ones(16))
    assert not torch.equal(mixed, images)
    # each target mixes the image's own class with one other
    assert bool((targets.gather(1, labels[:, None]) > 0).all())
    assert int((targets > 0).sum(dim=1).max()) <= 2


def test_random_erasing_changes_a_rectangle_and_keeps_hard_labels() -> None:
    torch.manual_seed(0)
    images, labels = torch.zeros(8, 3, 16, 16), torch.arange(8)
    erased, targets = BatchAugment(10, random_erasing=1.0)(images, labels)
    assert torch.equal(targets, labels)
    changed = (erased != 0).any(dim=1)  # (N, H, W)
    assert bool(changed.flatten(1).any(dim=1).all())  # every image, since p=1
    rows, cols = torch.nonzero(changed[0], as_tuple=True)
    area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert int(changed[0].sum()) == int(area)  # one solid rectangle
    assert torch.equal(images, torch.zeros(8, 3, 16, 16))  # the input batch is untouched


@pytest.mark.parametrize("bad", [{"mixup_alpha": -1.0}, {"random_erasing": 1.5}])
def test_invalid_batch_augmentation_is_a_config_error(bad: dict) -> None:
    with pytest.raises(ConfigError):
        BatchAugment(10, **bad)


def test_loss_and_metrics_take_soft_targets() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    module = ClassifierModule(net, optimizer=partial(torch.optim.SGD, lr=0.1), num_classes=3)
    images = torch.randn(4, 1, 2, 2)
    targets = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.6, 0.4], [0.2, 0.0, 0.8], [0.5, 0.5, 0.0]])
    loss = module._shared_step((images, targets), "train")
    logits = net(images)
    expected = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # accuracy against each mixed image's dominant class
    dominant = logits.argmax(dim=1) == targets.argmax(dim=1)
    assert module.epoch_metrics("train")["train/acc"].item() == pytest.approx(dominant.float().mean().item())


def test_weight_decay_can_skip_norms_and_biases() -> None:
    net = SmallCNN(in_channels=3, num_classes=10)
    groups = parameter_groups(net, decay_norm_and_bias=False)
    no_decay = [g for g in groups if g.get("weight_decay") == 0.0]
    decay = [g for g in groups if "weight_decay" not in g]
    assert all(p.ndim == 1 for g in no_decay for p in g["params"])
    assert all(p.ndim > 1 for g in decay for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    assert len(parameter_groups(net)) == 1  # the default: one group, decay everywhere
    optimizer = torch.optim.SGD(groups, lr=0.1, weight_decay=5e-4)
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 5e-4}


def test_onecycle_peaks_at_each_groups_own_lr() -> None:
    params = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": [params[0]], "lr_scale": 0.1}, {"params": [params[1]]}], lr=0.5)
    for group in optimizer.param_groups:
        group["lr"] *= group.get("lr_scale", 1.0)
    scheduler = onecycle(optimizer, total_steps=20)
    peaks = [0.0, 0.0]
    for _ in range(20):
        optimizer.step()
        scheduler.step()
        peaks = [max(peak, group["lr"]) for peak, group in zip(peaks, optimizer.param_groups, strict=True)]
    assert peaks == pytest.approx([0.05, 0.5], rel=0.02)


class Doubler(nn.Module):
    """A 'model' whose logits are a fixed linear map of the image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3 * 8 * 8, 5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1))


@pytest.mark.parametrize("mode", ["flip", "translate", "flip_translate"])
def test_tta_averages_the_softmax_of_the_views(mode: str) -> None:
    model, images = Doubler(), torch.randn(4, 3, 8, 8)
    expected = torch.stack([model(view).softmax(-1) for view in views(images, mode)]).mean(0)
    assert torch.allclose(tta_probabilities(model, images, mode), expected, atol=1e-6)
    assert len(views(images, mode)) == {"flip": 2, "translate": 5, "flip_translate": 10}[mode]
    assert torch.equal(views(images, mode)[0], images)
    if "flip" in mode:
        assert torch.equal(views(images, mode)[1], images.flip(-1))


def test_flip_tta_equals_plain_for_a_flip_invariant_input() -> None:
    model, images = Doubler(), torch.randn(4, 3, 8, 8)
    symmetric = images + images.flip(-1)
    plain = model(symmetric).softmax(-1)
    assert torch.allclose(tta_probabilities(model, symmetric, "flip"), plain, atol=1e-6)
    assert not torch.allclose(tta_probabilities(model, images, "flip"), model(images).softmax(-1), atol=1e-4)


def test_translation_shifts_content() -> None:
    images = torch.arange(64.0).view(1, 1, 8, 8)
    shifted = views(images, "translate")
    assert torch.equal(shifted[1][..., 2:, :], images[..., :-2, :])  # first offset: 2 rows down


def test_recipes_compose_through_the_entry_point(train_run) -> None:
    record = train_run(
        "model=smallcnn",
        "data=cifar10",
        "recipe=all",
        "augment=randaugment",
        "data.random_erasing=0.5",
        "tta=flip_translate",
        "callbacks=[default,ema]",
        "decay_norm_and_bias=false",
        "trainer.gradient_clip_val=1.0",
        "val_acc_target=0.0",
    )
    assert record["tta"] == "flip_translate"
    assert 0.0 <= record["test_tta_acc"] <= 1.0 and 0.0 <= record["test_tta_f1_macro"] <= 1.0
    assert record["epochs_to_val_acc"] == 1 and record["val_acc_target"] == 0.0


def test_epochs_to_val_acc_is_none_when_never_reached(train_run) -> None:
    record = train_run("model=mlp", "data=mnist", "val_acc_target=1.01")
    assert record["epochs_to_val_acc"] is None and record["tta"] is None and record["test_tta_acc"] is None


def test_ema_checkpoint_holds_the_averaged_weights(train_run, tmp_path: Path) -> None:
    run_dir = tmp_path / "ema"
    record = train_run(
        "model=mlp", "data=mnist", "callbacks=[default,ema]", "trainer.max_epochs=2", run_dir=run_dir
    )
    checkpoint = torch.load(run_dir / record["best_checkpoint"], map_location="cpu", weights_only=False)
    averaged, current = checkpoint["state_dict"], checkpoint["current_model_state"]
    weight = "net.layers.1.weight"
    assert not torch.equal(averaged[weight], current[weight])


def test_lr_find_alone_saves_the_plot_and_a_finite_suggestion(train_run, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "find"
    with pytest.raises(FileNotFoundError):  # nothing is trained, so there is no run record
        train_run(
            "model=mlp", "data=mnist", "lr_find.enabled=true", "lr_find.num_training=20", run_dir=run_dir
        )
    assert (run_dir / "lr_find.png").stat().st_size > 0
    found = json.loads((run_dir / "lr_find.json").read_text())
    assert math.isfinite(found["suggestion"]) and 1e-6 <= found["suggestion"] <= 1.0
    assert len(found["lr"]) == len(found["loss"]) == 20
    assert f"suggested lr {found['suggestion']:.3g}" in capsys.readouterr().out
    assert not list(run_dir.glob("checkpoints/*.ckpt"))


def test_lr_find_apply_trains_with_the_suggestion(train_run, tmp_path: Path) -> None:
    run_dir = tmp_path / "apply"
    record = train_run(
        "model=mlp",
        "data=mnist",
        "lr_find.apply=true",
        "lr_find.num_training=20",
        "scheduler=onecycle",
        "trainer.log_every_n_steps=1",  # the LR monitor logs every n steps; a tiny run has few
        run_dir=run_dir,
    )
    suggestion = json.loads((run_dir / "lr_find.json").read_text())["suggestion"]
    assert record["lr"] == record["lr_find_suggestion"] == suggestion
    metrics_csv = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    header = metrics_csv[0].split(",")
    assert "lr-SGD" in header  # the LR monitor saw the schedule the suggestion set
