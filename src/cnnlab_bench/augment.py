"""Seconds to serve one epoch of augmented, normalised training batches, model left out.

    CNNLAB_DATA=<data root> python -m cnnlab_bench.augment [data=mnist ...]

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

PATHS = (
    "DataLoader, per-image augmentation in the workers (before)",
    "DataLoader, whole-batch augmentation after transfer",
    "device-resident (data.loader=tensor)",
)


def datamodule(config_dir: Path, overrides: list[str], loader: str) -> ImageDataModule:
    """The training split of ``python -m train <overrides>``, set up as a fit on the CPU would see it."""
    with initialize_config_dir(str(config_dir), version_base="1.3"):
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


def measure(config_dir: Path, overrides: list[str]) -> dict[str, float]:
    """Seconds per epoch of each data path in PATHS; prints one line per path."""
    per_image = datamodule(config_dir, overrides, "torch")
    # the DataModule no longer offers the old path: put the augmentation back into the workers and
    # take it out of the batch transfer
    per_image.train_set.transform = per_image.train_transform
    per_image._batched_ops = []
    batched, resident = (datamodule(config_dir, overrides, loader) for loader in ("torch", "tensor"))
    modules = (per_image, batched, resident)
    augment = [type(t).__name__ for t in per_image.augment]
    print(f"{' '.join(overrides)}: {augment}, {len(per_image.train_set)} images, torch {torch.__version__}")
    seconds = {}
    for name, dm in zip(PATHS, modules, strict=True):
        seconds[name] = epoch_seconds(dm)
        print(f"{seconds[name]:8.2f} s  {name}")
    return seconds


def main(argv: list[str] | None = None) -> dict[str, float]:
    from cnnlab.configs import CONFIG_DIR  # wherever the configs are installed

    overrides = ["data=mnist", *(sys.argv[1:] if argv is None else argv)]
    return measure(Path(CONFIG_DIR), overrides)


if __name__ == "__main__":
    main()
