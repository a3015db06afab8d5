from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from cnnlab.training.module import ClassifierModule


def make_module(**kwargs) -> ClassifierModule:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    return ClassifierModule(net, optimizer=partial(torch.optim.SGD, lr=0.1), num_classes=3, **kwargs)


def test_accuracy_is_top1_and_f1_is_macro() -> None:
    module = make_module()
    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    labels = torch.tensor([0, 1, 1, 2])  # 3 of 4 right; class 0: P=1/2 R=1, class 1: P=1 R=1/2, class 2: 1
    module.test_metrics.update(logits, labels)
    result = module.test_metrics.compute()
    assert result["test/acc"] == pytest.approx(0.75)
    assert result["test/f1_macro"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_label_smoothing_reaches_the_loss() -> None:
    assert make_module(label_smoothing=0.1).criterion.label_smoothing == 0.1


def test_stage_metrics_are_independent() -> None:
    module = make_module()
    module.train_metrics.update(torch.tensor([[1.0, 0, 0]]), torch.tensor([0]))
    module.val_metrics.update(torch.tensor([[1.0, 0, 0]]), torch.tensor([1]))
    assert module.train_metrics.compute()["train/acc"] == 1.0
    assert module.val_metrics.compute()["val/acc"] == 0.0


def test_epoch_metrics_cover_every_step_and_weight_the_loss_by_batch_size() -> None:
    module = make_module()
    batches = [(torch.randn(n, 1, 2, 2), torch.randint(0, 3, (n,))) for n in (5, 2, 7)]
    losses = [module._shared_step(batch, "val") for batch in batches]
    values = module.epoch_metrics("val")
    images = torch.cat([images for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    logits = module(images)
    expected_acc = (logits.argmax(dim=1) == labels).float().mean()
    expected_loss = sum(loss.item() * len(y) for loss, (_, y) in zip(losses, batches, strict=True)) / len(
        labels
    )
    assert values["val/acc"].item() == pytest.approx(expected_acc.item())
    assert values["val/loss"].item() == pytest.approx(expected_loss, rel=1e-6)
    assert values["val/loss"].item() == pytest.approx(module.criterion(logits, labels).item(), rel=1e-5)
    # the next epoch starts from nothing
    assert module.epoch_metrics("val") == {}
    module._shared_step(batches[0], "val")
    assert module.epoch_metrics("val")["val/acc"].item() == pytest.approx(
        (module(batches[0][0]).argmax(dim=1) == batches[0][1]).float().mean().item()
    )
