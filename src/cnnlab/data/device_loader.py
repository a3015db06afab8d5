"""The device-resident data path (``data.loader=tensor``): a split kept as one uint8 tensor on the
training device, shuffled with a seeded generator and augmented as whole batches there.

The airbench-style CIFAR-10 speed runs get most of their speed this way: no worker processes, no
per-sample Python, no host-to-device copies after the first.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

log = logging.getLogger(__name__)

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def random_crop(
    images: torch.Tensor, padding: int, generator: torch.Generator, padding_mode: str = "reflect"
) -> torch.Tensor:
    """Per-image random crop of the padded batch back to its size (v2.RandomCrop semantics)."""
    if padding == 0:
        return images
    n, _, height, width = images.shape
    mode = "constant" if padding_mode == "constant" else padding_mode
    padded = F.pad(images, (padding,) * 4, mode=mode)
    device = images.device
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    rows = (top[:, None] + torch.arange(height, device=device))[:, :, None]
    cols = (left[:, None] + torch.arange(width, device=device))[:, None, :]
    batch = torch.arange(n, device=device)[:, None, None]
    # advanced indexing gathers every image's own window at once: (n, H, W, C)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability ``p`` (v2.RandomHorizontalFlip semantics)."""
    flip = torch.rand(len(images), generator=generator, device=images.device) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def _per_sample(transform: Callable) -> BatchTransform:
    def apply(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # torchvision draws from the global RNG: seed it from the loader's generator, so these draws
        # too replay from a checkpoint and leave the rest of the run's random stream alone
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([transform(image) for image in images])

    return apply


def batch_transforms(transforms: Sequence[Callable]) -> list[BatchTransform]:
    """The configured per-sample v2 augmentations as whole-batch operations.

    RandomCrop (with its padding and padding mode) and RandomHorizontalFlip run batched; any other
    transform still runs, image by image, so the semantics never change, only the speed.
    """
    batched: list[BatchTransform] = []
    for transform in transforms:
        if isinstance(transform, v2.RandomCrop) and transform.padding is not None:
            padding = transform.padding[0]
            if len(set(transform.padding)) != 1 or transform.pad_if_needed:
                batched.append(_per_sample(transform))
                continue
            mode = transform.padding_mode

            def crop(images, generator, padding=padding, mode=mode):
                return random_crop(images, padding, generator, mode)

            batched.append(crop)
        elif isinstance(transform, v2.RandomHorizontalFlip):

            def flip(images, generator, p=transform.p):
                return random_flip(images, p, generator)

            batched.append(flip)
        else:
            log.info(
                "data.loader=tensor: %s has no batched version; applying it image by image",
                type(transform).__name__,
            )
            batched.append(_per_sample(transform))
    return batched


class DeviceBatches:
    """Iterate over (uint8 images, labels) batches of tensors that stay on one device.

    Each pass draws a fresh order from a generator seeded with ``seed`` and the pass number, so a
    run is reproducible. Under DDP every rank takes its own interleaved share of the same order.
    ``state_dict`` / ``load_state_dict`` (Lightning saves them in every checkpoint) carry the pass,
    the batches already served and the generator, so a resumed run continues the exact batch stream,
    mid-epoch included.
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
            images = self.images[index]
            for transform in self.transforms:
                images = transform(images, generator)
            self._served += 1
            yield images, self.labels[index]

    def state_dict(self) -> dict[str, Any]:
        """Where the batch stream stands: the seed, the pass being served and its progress."""
        state: dict[str, Any] = {"seed": self.seed, "passes": self.passes, "served": 0}
        if self._generator is not None and self._served < len(self):
            state.update(passes=self.passes - 1, served=self._served, generator=self._generator.get_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream ``state_dict`` described: the next batch is the one after the last served."""
        self.seed, self.passes = int(state["seed"]), int(state["passes"])
        self._resume_at = (int(state["served"]), state["generator"]) if state["served"] else None
