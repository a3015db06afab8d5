"""What makes the DataLoader path resume exactly, mid-epoch and with worker processes.

:class:`SeededSampler` draws each epoch's order *and one augmentation seed per image* from (seed, epoch),
and can start an epoch after the batches a checkpoint had already trained on. The workers seed their
per-image transform from that seed, so an image is augmented the same way whichever worker takes it
and whatever that worker did before: the stream after a resume is the uninterrupted run's.
(torchdata's StatefulDataLoader restores the sampler's position, but not the random state each worker
had reached, which the per-image augmentation draws from.)
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

# SLURM signals every process of a job, and Ctrl-C every process of the terminal's foreground group:
# DataLoader workers leave these to the training process, which saves a checkpoint and then shuts them
# down (a worker stopped by the signal would abort training first)
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class SeededSampler(Sampler[tuple[int, int]]):
    """Yields ``(image index, augmentation seed)`` pairs; Lightning sets the epoch (``set_epoch``)."""

    def __init__(self, size: int, shuffle: bool, seed: int) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.epoch = 0
        self._resume_at: tuple[int, int] | None = None  # (epoch, images already trained on)

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, images: int) -> None:
        """Start ``epoch`` after its first ``images`` (the batches a mid-epoch checkpoint had trained on)."""
        self._resume_at = (epoch, images)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        order = torch.randperm(self.size, generator=generator) if self.shuffle else torch.arange(self.size)
        seeds = torch.randint(2**62, (self.size,), generator=generator)
        first = 0
        if self._resume_at is not None and self._resume_at[0] == self.epoch:
            first, self._resume_at = self._resume_at[1], None
        for position in range(first, self.size):
            yield int(order[position]), int(seeds[position])

    def state(self, epoch: int, images: int) -> dict[str, int]:
        return {"seed": self.seed, "epoch": epoch, "images": images}


def seeded(transform: Any, image: torch.Tensor, seed: int) -> torch.Tensor:
    """``transform(image)`` with torch's generator seeded from ``seed``.

    In a worker the generator is the worker's own; in the training process (``num_workers=0``) it is
    forked, so dropout and the rest of the run draw what they would have drawn anyway.
    """
    # the CPU generator alone: torchvision's transforms draw from it (torch.manual_seed seeds CUDA too)
    if torch.utils.data.get_worker_info() is not None:
        torch.default_generator.manual_seed(seed)
        return transform(image)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return transform(image)


def worker_init(worker_id: int) -> None:
    """DataLoader workers ignore preemption signals; Lightning's worker seeding still applies."""
    for signum in PREEMPTION_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if os.environ.get("PL_SEED_WORKERS") == "1":
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)
