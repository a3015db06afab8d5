"""Seconds to serve one epoch of augmented, normalised MNIST training batches, model left out.

    CNNLAB_DATA=<data root> python -m cnnlab.data.augment_benchmark [data=mnist ...]

Times three data paths over the configured dataset and augmentation (Hydra overrides as for
``python -m train``): the DataLoader with the augmentation image by image in its workers (what
``data.loader=torch`` did before the batched transforms), the DataLoader with whole-batch
augmentation after the transfer, and the device-resident path (``data.loader=tensor``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from cnnlab.data import ImageDataModule

CONF = str(Path(__file__).resolve().parents[3] / "conf")  # conf/ beside src/ (editable install)


def datamodule(overrides: list[str], loader: str) -> ImageDataModule:
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", [*overrides, f"data.loader={loader}"])
    dm: ImageDataModule = instantiate(cfg.data)
    dm.setup("fit")
    dm.trainer = SimpleNamespace(
        training=True, global_rank=0, world_size=1, strategy=SimpleNamespace(root_device="cpu")
    )
    return dm


def epoch_seconds(dm: ImageDataModule) -> float:
    start = time.perf_counter()
    for images, labels in dm.train_dataloader():
        dm.on_after_batch_transfer((images, labels), 0)
    return time.perf_counter() - start


def main() -> None:
    overrides = ["data=mnist", *sys.argv[1:]]
    per_image = datamodule(overrides, "torch")
    per_image.train_set.transform = per_image.train_transform  # the old path: augment in the worker
    per_image._batched_ops = []
    paths = {
        "DataLoader, per-image augmentation in the workers (before)": per_image,
        "DataLoader, whole-batch augmentation after transfer": datamodule(overrides, "torch"),
        "device-resident (data.loader=tensor)": datamodule(overrides, "tensor"),
    }
    augment = [type(t).__name__ for t in per_image.augment]
    print(f"{' '.join(overrides)}: {augment}, {len(per_image.train_set)} images, torch {torch.__version__}")
    for name, dm in paths.items():
        print(f"{epoch_seconds(dm):8.2f} s  {name}")


if __name__ == "__main__":
    main()
