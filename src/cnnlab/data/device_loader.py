"""The device-resident data path (``data.loader=tensor``): a split kept as one uint8 tensor on the
training device, shuffled with a seeded generator and augmented as whole batches there.

The airbench-style CIFAR-10 speed runs get most of their speed this way: no worker processes, no
per-sample Python, no host-to-device copies after the first.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

# re-exported: the batched ops lived here before they served the DataLoader path too
from cnnlab.data.batched_transforms import (
    BatchTransform,
    apply_all,
    batch_transforms,
    random_crop,
    random_flip,
)

__all__ = [
    "BatchTransform",
    "DeviceBatches",
    "batch_transforms",
    "choose_loader",
    "free_memory_bytes",
    "random_crop",
    "random_flip",
]

log = logging.getLogger(__name__)

# data.loader=auto keeps a split on the device only if it takes at most this share of the free memory:
# the model, its activations and the rest of the machine need the rest
MEMORY_SHARE = 0.5


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on ``device``: the GPU's free memory, else the host's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None  # unknown (e.g. macOS has no SC_AVPHYS_PAGES)


def choose_loader(split_bytes: int, device: torch.device, per_image: Sequence[str]) -> tuple[str, str]:
    """data.loader=auto: ``("tensor" | "torch", why)`` for a split of ``split_bytes`` on ``device``.

    The device-resident path wins whenever it can run: it needs the split to fit in the device's
    memory with a margin, and every augmentation to run on whole batches (per-image policies are
    faster in parallel DataLoader workers than image by image in the training process).
    """
    if per_image:
        return "torch", f"{', '.join(per_image)} augment image by image, which DataLoader workers parallelise"
    free = free_memory_bytes(device)
    if free is None:
        return "torch", f"the free memory of {device} is unknown"
    needed = f"{split_bytes / 2**20:,.0f} MiB of images"
    if split_bytes > MEMORY_SHARE * free:
        return "torch", f"{needed} exceed {MEMORY_SHARE:.0%} of the {free / 2**30:.1f} GiB free on {device}"
    fits = f"{needed} fit in the {free / 2**30:.1f} GiB free on {device}"
    return "tensor", f"{fits} and every augmentation runs on whole batches"


class DeviceBatches:
    """Iterate over (uint8 images, labels) batches of tensors that stay on one device.

    Each pass draws a fresh order from a generator seeded with ``seed`` and the pass number, so a
    run is reproducible. Under DDP every rank takes its own interleaved share of the same order.
    ``state_dict`` / ``load_state_dict`` (Lightning saves them in every checkpoint) carry the pass,
    the batches already served and the generator, so a resumed run continues the exact batch stream,
    mid-epoch included. ``batches_per_pass`` says how many batches of a pass the consumer takes (a
    trainer's ``limit_train_batches``): a pass served that far has ended, and a resume starts the next.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        transforms: Sequence[BatchTransform] = (),
        seed: int = 0,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        batches_per_pass: Callable[[], float] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transforms = list(transforms)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.batches_per_pass = batches_per_pass
        self.passes = 0
        # the pass being served: its generator and how many batches it has yielded
        self._generator: torch.Generator | None = None
        self._served = 0
        # from load_state_dict: (batches to skip, generator state) for the next pass
        self._resume_at: tuple[int, torch.Tensor] | None = None

    def _share(self) -> int:
        return len(self.labels) // self.world_size if self.world_size > 1 else len(self.labels)

    def __len__(self) -> int:
        share = self._share()
        return share // self.batch_size if self.drop_last else math.ceil(share / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator(device=self.device).manual_seed(
            (self.seed * 100_003 + self.passes) % 2**63
        )
        self.passes += 1
        count = len(self.labels)
        if self.shuffle:
            order = torch.randperm(count, generator=generator, device=self.device)
        else:
            order = torch.arange(count, device=self.device)
        if self.world_size > 1:
            order = order[: self._share() * self.world_size][self.rank :: self.world_size]
        first = 0
        if self._resume_at is not None:
            first, generator_state = self._resume_at
            generator.set_state(generator_state)
            self._resume_at = None
        self._generator, self._served = generator, first
        for start in range(first * self.batch_size, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            images = apply_all(self.images[index], self.transforms, generator)
            self._served += 1
            yield images, self.labels[index]

    def state_dict(self) -> dict[str, Any]:
        """Where the batch stream stands: the seed, the pass being served and its progress."""
        state: dict[str, Any] = {"seed": self.seed, "passes": self.passes, "served": 0}
        taken = len(self) if self.batches_per_pass is None else min(len(self), self.batches_per_pass())
        if self._generator is not None and self._served < taken:
            state.update(passes=self.passes - 1, served=self._served, generator=self._generator.get_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream ``state_dict`` described: the next batch is the one after the last served."""
        self.seed, self.passes = int(state["seed"]), int(state["passes"])
        self._resume_at = (int(state["served"]), state["generator"]) if state["served"] else None
