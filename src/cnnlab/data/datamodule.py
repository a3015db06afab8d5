"""One LightningDataModule for every dataset family: files on disk -> split -> transforms -> batches."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from cnnlab.data import readers
from cnnlab.data.batch_augment import BatchAugment
from cnnlab.data.device_loader import DeviceBatches, batch_transforms
from cnnlab.data.readers import ImageSplit
from cnnlab.data.transforms import Normalize, augmentation
from cnnlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class IndexedImages(Dataset):
    """A view of some images of a split, with an optional per-sample transform."""

    def __init__(
        self, split: ImageSplit, indices: torch.Tensor | None = None, transform: Callable | None = None
    ):
        self.split = split
        self.indices = torch.arange(len(split)) if indices is None else indices
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.indices[item]
        image = self.split.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.split.labels[index]


def resolve_num_workers(num_workers: int | str) -> int:
    """``auto``: leave one core to the training process, at most 8 workers."""
    if num_workers == "auto":
        return max(1, min(8, (os.cpu_count() or 2) - 1))
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"data.num_workers={num_workers!r} is invalid; use a count >= 0 or 'auto'")
    return num_workers


def worker_start_method() -> str | None:
    """How DataLoader workers start: None (torch's default) unless this process's default start method
    is not one of Python's own.

    Inside a job of the joblib launcher (a loky worker) the default is ``loky``, whose Popen expects
    loky's own process objects and fails on DataLoader workers (``'Process' object has no attribute
    'env'``, pytorch/pytorch#44687); those workers then start with the platform's default method.
    """
    method = multiprocessing.get_start_method(allow_none=True)
    standard = multiprocessing.get_all_start_methods()  # the platform's default first
    return None if method is None or method in standard else standard[0]


class ImageDataModule(L.LightningDataModule):
    """Train / validation / test batches of one dataset.

    The validation set is ``val_size`` images held out of the training files with a fixed seed
    (``split_seed``), seen through the eval transforms; the test files are used only by ``test``.
    """

    def __init__(
        self,
        name: str,
        root: str,
        channels: int,
        image_size: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        classes: Sequence[str],
        download: bool = False,
        val_size: int = 5000,
        split_seed: int = 0,
        batch_size: int = 128,
        num_workers: int | str = "auto",
        pin_memory: bool = True,
        augment: Sequence[Callable] = (),
        loader: str = "torch",
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        random_erasing: float = 0.0,
    ) -> None:
        super().__init__()
        self.source = readers.source(name)
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} is invalid; use a positive batch size")
        if len(classes) != num_classes:
            raise ConfigError(f"data.classes has {len(classes)} names but data.num_classes={num_classes}")
        self.name = name
        self.root = Path(root).expanduser()
        self.shape = (channels, image_size, image_size)
        self.num_classes = num_classes
        self.classes = list(classes)
        self.download = download
        self.val_size = val_size
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.num_workers = resolve_num_workers(num_workers)
        self.pin_memory = pin_memory
        if loader not in ("torch", "tensor"):
            raise ConfigError(
                f"data.loader={loader!r} is unknown; use torch (DataLoader) or tensor (on the device)"
            )
        self.loader = loader
        self.augment = list(augment)
        self.train_transform = augmentation(augment)
        self.batch_augment = BatchAugment(num_classes, mixup_alpha, cutmix_alpha, random_erasing)
        self.normalize = Normalize(mean, std)
        self.train_set: IndexedImages | None = None
        self.val_set: IndexedImages | None = None
        self.test_set: IndexedImages | None = None
        # the device-resident training stream, and the position a checkpoint restores it to
        self._train_batches: DeviceBatches | None = None
        self._train_batches_state: dict[str, Any] | None = None

    def prepare_data(self) -> None:
        if self.download:
            readers.download(self.name, self.root)

    def _read(self, train: bool) -> ImageSplit:
        split = self.source.read(self.root, train)
        if tuple(split.images.shape[1:]) != self.shape:
            raise DataError(
                f"{self.source.title} images are {tuple(split.images.shape[1:])} (C, H, W) but the config "
                f"says {self.shape}; fix data.channels / data.image_size or the files under {self.root}"
            )
        if len(split) and int(split.labels.max()) >= self.num_classes:
            raise DataError(
                f"{self.source.title} has label {int(split.labels.max())} >= {self.num_classes} classes"
            )
        return split

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate", None) and self.train_set is None:
            self._setup_train_val(self._read(train=True))
        if stage in ("test", "predict", None) and self.test_set is None:
            self.test_set = IndexedImages(self._read(train=False))

    def _setup_train_val(self, split: ImageSplit) -> None:
        if not 0 <= self.val_size < len(split):
            raise ConfigError(
                f"data.val_size={self.val_size} is invalid for {len(split)} training images; "
                f"use 0 <= data.val_size < {len(split)}"
            )
        generator = torch.Generator().manual_seed(self.split_seed)
        order = torch.randperm(len(split), generator=generator)
        self.val_indices, self.train_indices = order[: self.val_size], order[self.val_size :]
        self.train_set = IndexedImages(split, self.train_indices, self.train_transform)
        if self.val_size:
            self.val_set = IndexedImages(split, self.val_indices)
            log.info(
                "%s: %d training / %d validation images (split seed %d)",
                self.source.title,
                len(self.train_indices),
                self.val_size,
                self.split_seed,
            )
        else:
            log.warning(
                "%s: data.val_size=0, training on all %d training images with no validation; "
                "the last epoch's model is the one tested",
                self.source.title,
                len(split),
            )

    @property
    def has_validation(self) -> bool:
        return self.val_size > 0

    def _loader(self, dataset: IndexedImages | None, train: bool) -> DataLoader | DeviceBatches:
        if dataset is None:
            raise RuntimeError("setup() must run before asking for a loader")
        if self.loader == "tensor":
            return self.device_batches(dataset, train)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            multiprocessing_context=worker_start_method() if self.num_workers > 0 else None,
        )

    def device_batches(
        self, dataset: IndexedImages, train: bool, device: torch.device | str | None = None
    ) -> DeviceBatches:
        """``dataset`` as batches kept on ``device`` (default: the trainer's device, else the CPU)."""
        trainer = self.trainer  # None outside a Trainer (tests, analysis)
        return DeviceBatches(
            dataset.split.images[dataset.indices],
            dataset.split.labels[dataset.indices],
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > self.batch_size,
            transforms=batch_transforms(self.augment) if train else (),
            seed=torch.initial_seed(),  # the run's seed after seed_everything
            device=device or (trainer.strategy.root_device if trainer is not None else "cpu"),
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        loader = self._loader(self.train_set, train=True)
        if isinstance(loader, DeviceBatches):
            if self._train_batches_state is not None:
                loader.load_state_dict(self._train_batches_state)
                log.info(
                    "data.loader=tensor: the training stream continues at pass %d, batch %d",
                    self._train_batches_state["passes"],
                    self._train_batches_state["served"],
                )
                self._train_batches_state = None
            self._train_batches = loader
        return loader

    def state_dict(self) -> dict[str, Any]:
        """The device-resident training stream's position, saved with every checkpoint.

        Lightning also saves it as the train loader's own state, but restores that too late when
        ``configure_optimizers`` asked for ``trainer.estimated_stepping_batches`` (every schedule
        here does); the datamodule's state is restored before the loader is built.
        """
        return {"train_batches": self._train_batches.state_dict()} if self._train_batches else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_batches_state = state_dict.get("train_batches")

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, train=False) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, torch.Tensor):  # images alone (prediction, the model summary's example)
            return self.normalize(batch)
        images, labels = batch
        images = self.normalize(images)
        if self.batch_augment.enabled and self.trainer is not None and self.trainer.training:
            return self.batch_augment(images, labels)
        return images, labels
