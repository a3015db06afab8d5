"""The Lookahead callback of the speedrun94 recipe."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cnnlab.callbacks.lookahead import Lookahead
from cnnlab.errors import ConfigError
from cnnlab.training.module import ClassifierModule


def make_module() -> ClassifierModule:
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    return ClassifierModule(net, optimizer=partial(torch.optim.SGD, lr=0.1), num_classes=3)


def at(step: int, epoch: int) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, current_epoch=epoch, estimated_stepping_batches=10)


def weights(module: ClassifierModule) -> list[torch.Tensor]:
    return [t.clone() for t in module.state_dict().values() if t.is_floating_point()]


def shift(module: ClassifierModule, amount: float) -> None:
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.add_(amount)


def test_lookahead_pulls_the_weights_into_a_slow_copy_on_schedule() -> None:
    module, lookahead = (
        make_module(),
        Lookahead(start_epoch=1, every_n_steps=2, decay_base=0.9, decay_power=3),
    )
    lookahead.on_train_batch_end(at(2, epoch=0), module)  # before start_epoch
    lookahead.on_train_batch_end(at(3, epoch=1), module)  # not a multiple of every_n_steps
    assert lookahead.slow is None
    lookahead.on_train_batch_end(at(4, epoch=1), module)  # starts the slow copy
    start = weights(module)
    shift(module, 1.0)
    lookahead.on_train_batch_end(at(6, epoch=1), module)
    rho = 0.9**2 * 0.6**3
    for now, before in zip(weights(module), start, strict=True):  # BN running statistics included
        torch.testing.assert_close(now, rho * before + (1 - rho) * (before + 1))
    slow = weights(module)
    # the epoch's last fast steps are dropped: validation and the epoch's end see the slow copy
    for hook in ("on_validation_start", "on_train_epoch_end"):
        shift(module, 5.0)
        getattr(lookahead, hook)(SimpleNamespace(training=True), module)
        for now, expected in zip(weights(module), slow, strict=True):
            torch.testing.assert_close(now, expected)


def test_lookahead_state_travels_with_checkpoints() -> None:
    module, lookahead = make_module(), Lookahead(start_epoch=0, every_n_steps=1)
    lookahead.on_train_batch_end(at(1, epoch=0), module)
    restored = Lookahead(start_epoch=0, every_n_steps=1)
    restored.load_state_dict(lookahead.state_dict())
    assert restored.slow is not None and all(
        torch.equal(a, b) for a, b in zip(restored.slow, lookahead.slow, strict=True)
    )


@pytest.mark.parametrize(
    "bad", [{"start_epoch": -1}, {"every_n_steps": 0}, {"decay_base": 1.0}, {"decay_power": -1.0}]
)
def test_invalid_lookahead_settings_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError):
        Lookahead(**bad)
