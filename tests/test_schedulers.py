from __future__ import annotations

import pytest
import torch

from cnnlab.training import schedulers


def lrs(factory, total_steps: int, **kwargs) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = factory(optimizer, total_steps=total_steps, **kwargs)
    seen = []
    for _ in range(total_steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_cosine_anneals_from_the_base_lr_to_eta_min_over_the_run() -> None:
    seen = lrs(schedulers.cosine, 100, eta_min=0.001)
    assert seen[0] == pytest.approx(0.1)
    assert seen[50] == pytest.approx((0.1 + 0.001) / 2, rel=0.05)
    assert seen[-1] == pytest.approx(0.001, abs=1e-3)
    assert all(a >= b for a, b in zip(seen, seen[1:], strict=False))


def test_cosine_warmup_rises_then_anneals() -> None:
    seen = lrs(schedulers.cosine, 100, warmup_fraction=0.1)
    assert seen[0] < 0.001 and max(seen) == pytest.approx(0.1, rel=1e-3)
    assert seen.index(max(seen)) == 10


def test_onecycle_peaks_at_max_lr() -> None:
    seen = lrs(schedulers.onecycle, 100, max_lr=0.4, pct_start=0.25)
    assert max(seen) == pytest.approx(0.4, rel=1e-3) and seen[0] < 0.4 / 20 and seen[-1] < 1e-3


def test_step_decays_at_fractions_of_the_run() -> None:
    seen = lrs(schedulers.step, 100, milestones=[0.5, 0.75], gamma=0.1)
    assert (
        seen[49] == pytest.approx(0.1)
        and seen[50] == pytest.approx(0.01)
        and seen[75] == pytest.approx(0.001)
    )


@pytest.mark.parametrize(("total_steps", "pct_start"), [(4, 0.25), (2, 0.5), (8, 0.125)])
def test_onecycle_runs_when_its_warm_up_would_be_one_step(total_steps: int, pct_start: float) -> None:
    seen = lrs(schedulers.onecycle, total_steps, pct_start=pct_start)
    assert len(seen) == total_steps and all(0 < lr <= 0.1 + 1e-9 for lr in seen)
    assert seen[0] == pytest.approx(0.1 / 25)  # starts at max_lr / div_factor


@pytest.mark.parametrize(
    "optimizer_class",
    [torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam],
)
def test_replay_rebuilds_a_schedule_for_every_optimizer(optimizer_class) -> None:
    # torch's AdamW keeps an option in its defaults that its constructor does not take
    net = torch.nn.Linear(2, 2)
    optimizer = optimizer_class(net.parameters(), lr=0.1, weight_decay=0.01)
    state, written = schedulers.replay(schedulers.cosine, optimizer, total_steps=10, steps_taken=5)
    assert state["last_epoch"] == 5
    assert written[0]["lr"] == pytest.approx(0.05)
    assert optimizer.param_groups[0]["lr"] == 0.1  # the optimizer itself is left as it was
