"""Learning-rate schedules over the whole run, stepped once per optimizer step.

Every factory takes ``(optimizer, total_steps)``: the training module supplies ``total_steps`` from
the trainer (epochs, batches, accumulation and ``limit_train_batches`` included), so a config only
states the shape of the schedule. Configs select them with ``_partial_: true``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    SequentialLR,
)


def _with_warmup(optimizer: Optimizer, main: LRScheduler, warmup_steps: int) -> LRScheduler:
    if warmup_steps <= 0:
        return main
    warmup = LinearLR(optimizer, start_factor=1e-3, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def _warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    return min(int(round(warmup_fraction * total_steps)), total_steps - 1)


def cosine(
    optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.0, eta_min: float = 0.0
) -> LRScheduler:
    """Optional linear warm-up, then cosine annealing to ``eta_min`` at the last step."""
    warmup = _warmup_steps(total_steps, warmup_fraction)
    main = CosineAnnealingLR(optimizer, T_max=max(total_steps - warmup, 1), eta_min=eta_min)
    return _with_warmup(optimizer, main, warmup)


def onecycle(
    optimizer: Optimizer,
    total_steps: int,
    max_lr: float | None = None,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
) -> LRScheduler:
    """Leslie Smith's one-cycle policy (torch's OneCycleLR), peaking at ``max_lr``.

    ``max_lr=None`` peaks at each parameter group's own LR (the optimizer's, after any ``lr_scale``);
    a number peaks there, times the group's ``lr_scale``.
    """
    peaks = [
        group["lr"] if max_lr is None else max_lr * group.get("lr_scale", 1.0)
        for group in optimizer.param_groups
    ]
    # OneCycleLR divides by its warm-up's length, pct_start * total_steps - 1 steps: zero for a short
    # run such as 4 steps at 0.25; there the peak moves half a step later
    if math.isclose(pct_start * total_steps, 1.0) and total_steps >= 2:
        pct_start = 1.5 / total_steps
    return OneCycleLR(
        optimizer, max_lr=peaks, total_steps=total_steps, pct_start=pct_start, div_factor=div_factor
    )


def step(
    optimizer: Optimizer, total_steps: int, milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1
) -> LRScheduler:
    """Multiply the LR by ``gamma`` at the given fractions of the run."""
    steps = sorted({max(1, int(fraction * total_steps)) for fraction in milestones})
    return MultiStepLR(optimizer, milestones=steps, gamma=gamma)


def triangle(
    optimizer: Optimizer, total_steps: int, start: float = 0.2, peak: float = 0.23, end: float = 0.07
) -> LRScheduler:
    """Linear ramp from ``start`` x LR to the LR at ``peak`` (a fraction of the run), then linear to
    ``end`` x LR: the airbench speed-run schedule."""
    rise = max(1, int(peak * total_steps))
    up = LinearLR(optimizer, start_factor=start, end_factor=1.0, total_iters=rise)
    down = LinearLR(optimizer, start_factor=1.0, end_factor=end, total_iters=max(1, total_steps - rise))
    return SequentialLR(optimizer, [up, down], milestones=[rise])


def _twin(optimizer: Optimizer) -> Optimizer:
    """An optimizer of ``optimizer``'s class with its groups and options over placeholder parameters."""
    groups = [
        {**{key: value for key, value in group.items() if key != "params"}, "params": [torch.zeros(1)]}
        for group in optimizer.param_groups
    ]
    # ``defaults`` can hold options the constructor does not take (torch's AdamW keeps Adam's
    # ``decoupled_weight_decay``); every group carries every option anyway, so pass only what it accepts
    parameters = inspect.signature(type(optimizer)).parameters.values()
    if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        accepted = {parameter.name for parameter in parameters}
        options = {key: value for key, value in optimizer.defaults.items() if key in accepted}
    else:
        options = dict(optimizer.defaults)
    return type(optimizer)(groups, **options)


def replay(
    factory: Callable[..., LRScheduler], optimizer: Optimizer, total_steps: int, steps_taken: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A schedule of ``total_steps`` after ``steps_taken`` steps: its state and the param-group values it set.

    Runs on a twin of ``optimizer`` (same class, groups and options, placeholder parameters), which must
    not have been touched by a scheduler yet: some schedules read their peak from the groups' LR.
    Returns the scheduler's ``state_dict`` and, per group, the entries the schedule wrote (LR, momentum,
    ...), to put into a restored optimizer.
    """
    twin = _twin(optimizer)
    before = [dict(group) for group in twin.param_groups]
    scheduler = factory(twin, total_steps=total_steps)
    for _ in range(steps_taken):
        twin.step()  # a no-op (no gradients); keeps torch from warning about the order of the calls
        scheduler.step()
    written = [
        {key: value for key, value in group.items() if key != "params" and (key, value) not in old.items()}
        | {"lr": group["lr"]}
        for group, old in zip(twin.param_groups, before, strict=True)
    ]
    return scheduler.state_dict(), written
