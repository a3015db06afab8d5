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
from cnnlab.data.batched_transforms import apply_all, batch_transforms, unbatchable
from cnnlab.data.device_loader import DeviceBatches, choose_loader
from cnnlab.data.folds import check_fold, fold_split
from cnnlab.data.readers import ImageSplit
from cnnlab.data.resumable import SeededSampler, seeded, worker_init
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

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        # (position, seed) from the training SeededSampler: the augmentation's draws come from the seed
        item, seed = item if isinstance(item, tuple) else (item, None)
        index = self.indices[item]
        image = self.split.images[index]
        if self.transform is not None:
            image = self.transform(image) if seed is None else seeded(self.transform, image, seed)
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
    With ``folds=K`` the validation set is instead fold ``fold`` of a stratified K-fold partition of the
    training files (seeded by ``split_seed``; ``val_size`` then ignored and set to the fold's size).
    """

    holds = "images"  # what it feeds (cnnlab.tasks): whole-image classifiers, networks and classical

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
        folds: int | None = None,
        fold: int = 0,
        batch_size: int = 128,
        num_workers: int | str = "auto",
        pin_memory: bool = True,
        augment: Sequence[Callable] = (),
        loader: str = "auto",
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        random_erasing: float = 0.0,
    ) -> None:
        super().__init__()
        self.source = self.find_source(name)
        check_fold(folds, fold)
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
        self.folds = folds
        self.fold = fold if folds is not None else None
        self.batch_size = batch_size
        self.num_workers = resolve_num_workers(num_workers)
        self.pin_memory = pin_memory
        if loader not in ("auto", "torch", "tensor"):
            raise ConfigError(
                f"data.loader={loader!r} is unknown; use auto, torch (DataLoader) or tensor (on the device)"
            )
        self.loader = loader
        self._loader_used: str | None = None  # torch or tensor, once auto is resolved
        self.augment = list(augment)
        self.train_transform = augmentation(augment)
        # augmentations without a batched version: with any of them the DataLoader workers run the
        # whole policy image by image; without, both paths augment whole batches on the device
        self.per_image_augment = unbatchable(self.augment)
        self._augment_generator: torch.Generator | None = None
        self._batched_ops = [] if self.per_image_augment else batch_transforms(self.augment)
        self._augment_generator_state: torch.Tensor | None = None
        self.batch_augment = BatchAugment(num_classes, mixup_alpha, cutmix_alpha, random_erasing)
        self.normalize = Normalize(mean, std)
        self.train_set: IndexedImages | None = None
        self.val_set: IndexedImages | None = None
        self.test_set: IndexedImages | None = None
        # the device-resident training stream, and the position a checkpoint restores it to
        self._train_batches: DeviceBatches | None = None
        self._train_batches_state: dict[str, Any] | None = None
        # the DataLoader path's training sampler, and the mid-epoch position a checkpoint restores
        self._train_sampler: SeededSampler | None = None
        self._train_sampler_state: dict[str, int] | None = None

    def find_source(self, name: str) -> Any:
        """Where the dataset's files are and what messages call it (``title``)."""
        return readers.source(name)

    def describe(self) -> dict[str, Any]:
        """What a model trained on this data needs to read new images: the class names in label order,
        the image size and channels, and the normalisation."""
        channels, size, _ = self.shape
        return {
            "name": self.name,
            "classes": list(self.classes),
            "image_size": size,
            "channels": channels,
            "mean": list(self.normalize.mean),
            "std": list(self.normalize.std),
        }

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
        if self.folds is not None:
            train_indices, val_indices = fold_split(
                split.labels.numpy(), self.folds, self.fold, self.split_seed
            )
            self.train_indices, self.val_indices = (
                torch.from_numpy(train_indices),
                torch.from_numpy(val_indices),
            )
            self.val_size = len(val_indices)  # N/K: what the run record reports as val_images
            self.train_set = IndexedImages(split, self.train_indices, self.train_transform)
            self.val_set = IndexedImages(split, self.val_indices)
            log.info(
                "%s: fold %d of %d: %d training / %d validation images (stratified, split seed %d)",
                self.source.title,
                self.fold,
                self.folds,
                len(train_indices),
                len(val_indices),
                self.split_seed,
            )
            return
        if not 0 <= self.val_size < len(split):
            raise ConfigError(
                f"data.val_size={self.val_size} is invalid for {len(split)} training images; "
                f"use 0 <= data.val_size < {len(split)}"
            )
        generator = torch.Generator().manual_seed(self.split_seed)
        order = torch.randperm(len(split), generator=generator)
        self.val_indices, self.train_indices = order[: self.val_size], order[self.val_size :]
        worker_transform = self.train_transform if self.per_image_augment else None
        self.train_set = IndexedImages(split, self.train_indices, worker_transform)
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
        return self.folds is not None or self.val_size > 0

    def _device(self) -> torch.device:
        trainer = self.trainer  # None outside a Trainer (tests, analysis)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    @property
    def loader_used(self) -> str:
        """The data path this run takes: ``torch`` (DataLoader) or ``tensor`` (device-resident)."""
        if self._loader_used is None:
            if self.loader != "auto":
                self._loader_used = self.loader
            else:
                # every split read so far goes to the device: the training files, and the test files
                loaded = (self.train_set, self.val_set, self.test_set)
                splits = {id(s.split): s.split for s in loaded if s is not None}
                split_bytes = sum(split.images.nbytes for split in splits.values())
                self._loader_used, why = choose_loader(split_bytes, self._device(), self.per_image_augment)
                log.info("data.loader=auto chose %s: %s", self._loader_used, why)
            if self._loader_used == "torch" and self.per_image_augment:
                log.info(
                    "data.augment: %s cannot run on whole batches; DataLoader workers apply the "
                    "augmentations image by image",
                    ", ".join(self.per_image_augment),
                )
        return self._loader_used

    def _loader(self, dataset: IndexedImages | None, train: bool) -> DataLoader | DeviceBatches:
        if dataset is None:
            raise RuntimeError("setup() must run before asking for a loader")
        if self.loader_used == "tensor":
            return self.device_batches(dataset, train)
        # one process: the seeded sampler (exact mid-epoch resume); DDP: Lightning's distributed sampler
        sampler = self._seeded_sampler(dataset) if train and self._world_size() == 1 else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train if sampler is None else None,
            sampler=sampler,
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            worker_init_fn=worker_init if self.num_workers > 0 else None,
            # its own generator for the workers' base seed: a loader started on resume draws nothing from
            # the global one, whose restored state dropout goes on with
            generator=torch.Generator().manual_seed(sampler.seed if sampler is not None else self.split_seed),
            multiprocessing_context=worker_start_method() if self.num_workers > 0 else None,
        )

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def _seeded_sampler(self, dataset: IndexedImages) -> SeededSampler:
        state, self._train_sampler_state = self._train_sampler_state, None
        sampler = SeededSampler(
            len(dataset), shuffle=True, seed=state["seed"] if state else torch.initial_seed()
        )
        if state:
            # set here: on resume Lightning starts the loader (and its workers prefetch) before set_epoch
            sampler.set_epoch(state["epoch"])
            sampler.resume_at(state["epoch"], state["images"])
            # epochs counted from 1, as in the resume line ("in epoch 2, after step 152")
            log.info(
                "data.loader=torch: epoch %d continues after %d images", state["epoch"] + 1, state["images"]
            )
        self._train_sampler = sampler
        return sampler

    def device_batches(
        self, dataset: IndexedImages, train: bool, device: torch.device | str | None = None
    ) -> DeviceBatches:
        """``dataset`` as batches kept on ``device`` (default: the trainer's device, else the CPU)."""
        trainer = self.trainer
        return DeviceBatches(
            dataset.split.images[dataset.indices],
            dataset.split.labels[dataset.indices],
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > self.batch_size,
            transforms=batch_transforms(self.augment) if train else (),
            seed=torch.initial_seed(),  # the run's seed after seed_everything
            device=device or self._device(),
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            # with limit_train_batches an epoch ends before the pass does
            batches_per_pass=(lambda: trainer.num_training_batches)
            if train and trainer is not None
            else None,
        )

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        loader = self._loader(self.train_set, train=True)
        if isinstance(loader, DeviceBatches):
            if self._train_batches_state is not None:
                loader.load_state_dict(self._train_batches_state)
                log.info(
                    # passes counted from 1, as epochs are in the resume line
                    "data.loader=tensor: the training stream continues in pass %d after %d batches",
                    self._train_batches_state["passes"] + 1,
                    self._train_batches_state["served"],
                )
                self._train_batches_state = None
            self._train_batches = loader
        return loader

    def state_dict(self) -> dict[str, Any]:
        """The training stream's position, saved with every checkpoint: the device-resident loader's,
        or the DataLoader path's augmentation generator.

        Lightning also saves the first as the train loader's own state, but restores that too late when
        ``configure_optimizers`` asked for ``trainer.estimated_stepping_batches`` (every schedule
        here does); the datamodule's state is restored before the loader is built.
        """
        if self._train_batches is not None:
            return {"train_batches": self._train_batches.state_dict()}
        state: dict[str, Any] = {}
        if self._augment_generator is not None:  # whole-batch augmentation on the DataLoader path
            state["augment_generator"] = self._augment_generator.get_state()
        trainer = self.trainer
        fitting = trainer is not None and getattr(getattr(trainer, "state", None), "fn", None) == "fit"
        if self._train_sampler is not None and fitting:
            # the seed, and mid-epoch the images already trained on: where the DataLoader path continues
            trained = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            if 0 < trained < trainer.num_training_batches:
                state["train_sampler"] = self._train_sampler.state(
                    trainer.current_epoch, trained * self.batch_size
                )
            else:
                epoch = trainer.current_epoch + (
                    trained >= trainer.num_training_batches
                )  # the next one, if done
                state["train_sampler"] = self._train_sampler.state(epoch, 0)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_batches_state = state_dict.get("train_batches")
        self._augment_generator_state = state_dict.get("augment_generator")
        self._train_sampler_state = state_dict.get("train_sampler")

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, train=False) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def augment_generator(self, device: torch.device) -> torch.Generator:
        """The DataLoader path's generator for batched augmentation: seeded by the run, one per rank."""
        if self._augment_generator is None:
            rank = self.trainer.global_rank if self.trainer is not None else 0
            seed = (torch.initial_seed() * 100_003 + 7919 * (rank + 1)) % 2**63
            self._augment_generator = torch.Generator(device=device).manual_seed(seed)
            if self._augment_generator_state is not None:  # resumed: continue the checkpointed draws
                self._augment_generator.set_state(self._augment_generator_state)
                self._augment_generator_state = None
        return self._augment_generator

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, torch.Tensor):  # images alone (prediction, the model summary's example)
            return self.normalize(batch)
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        if training and self._batched_ops and self.loader_used == "torch":
            # the DataLoader served raw images: augment the whole batch here, on the training device
            images = apply_all(images, self._batched_ops, self.augment_generator(images.device))
        images = self.normalize(images)
        if self.batch_augment.enabled and self.trainer is not None and self.trainer.training:
            return self.batch_augment(images, labels)
        return images, labels
