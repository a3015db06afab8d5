"""Write a built-in dataset out as a class-folder tree of PNG files, the layout ``data=folder`` reads:
``OUT/train/<class>/00000.png`` and ``OUT/test/<class>/00000.png``.

``python -m cnnlab.data.write_folder data=cifar10 out=/tmp/cifar10-png [per_class=100] [root=DATA]``

It gives an offline, real-image example of ``data=folder`` (docs/folder-data.md) and the folder that
the speed and accuracy comparison with ``data=cifar10`` was measured on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image
from tqdm.auto import tqdm

from cnnlab.configs import CONFIG_DIR
from cnnlab.data.readers import SOURCES, source
from cnnlab.errors import ConfigError, exit_on_user_error


def class_names(dataset: str) -> list[str]:
    """The class names of the dataset's config (conf/data/<name>.yaml), used as the folder names."""
    return [str(name) for name in OmegaConf.load(Path(CONFIG_DIR) / "data" / f"{dataset}.yaml").classes]


def write_split(
    images: torch.Tensor, labels: torch.Tensor, names: Sequence[str], out: Path, desc: str
) -> int:
    """Each image as ``out/<class name>/<index>.png`` (grey or RGB); returns how many were written."""
    for name in names:
        (out / name).mkdir(parents=True, exist_ok=True)
    pixels = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C) for PIL
    for index, (image, label) in enumerate(
        tqdm(zip(pixels, labels.tolist(), strict=True), total=len(labels), desc=desc, unit="img")
    ):
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        picture.save(out / names[label] / f"{index:05d}.png")
    return len(labels)


def first_per_class(labels: torch.Tensor, per_class: int | None) -> torch.Tensor:
    """The indices of the first ``per_class`` images of every class, in file order (None: all)."""
    if per_class is None:
        return torch.arange(len(labels))
    keep = [torch.nonzero(labels == c).flatten()[:per_class] for c in labels.unique()]
    return torch.cat(keep).sort().values


def write_folder(dataset: str, out: Path, root: Path, per_class: int | None = None) -> dict[str, int]:
    """``dataset``'s training and test files as ``out/train`` and ``out/test`` class folders of PNGs."""
    if dataset not in SOURCES:
        raise ConfigError(f"data={dataset} is not a dataset to write out; use one of {', '.join(SOURCES)}")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"out={out} is not empty; pass a new or empty folder (nothing written)")
    names = class_names(dataset)
    written = {}
    for split, train in (("train", True), ("test", False)):
        images = source(dataset).read(root, train)
        chosen = first_per_class(images.labels, per_class)
        written[split] = write_split(
            images.images[chosen], images.labels[chosen], names, out / split, f"{split}/"
        )
    return written


def parse_args(argv: Sequence[str]) -> dict[str, str]:
    """``key=value`` arguments, as the other commands take them."""
    known = ("data", "out", "root", "per_class")
    args = {}
    for arg in argv:
        key, equals, value = arg.partition("=")
        if not equals or key not in known:
            raise ConfigError(f"unknown argument {arg!r}; pass {', '.join(k + '=...' for k in known)}")
        args[key] = value
    if "out" not in args:
        raise ConfigError("no output folder: pass out=<folder> (e.g. out=/tmp/cifar10-png)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    with exit_on_user_error():
        args = parse_args(sys.argv[1:] if argv is None else argv)
        dataset = args.get("data", "cifar10")
        root = Path(args.get("root") or os.environ.get("CNNLAB_DATA", "data")).expanduser()
        per_class = None
        if args.get("per_class"):
            if not args["per_class"].isdigit() or int(args["per_class"]) < 1:
                raise ConfigError(
                    f"per_class={args['per_class']} is invalid; use a positive number of images per class"
                )
            per_class = int(args["per_class"])
        out = Path(args["out"]).expanduser()
        written = write_folder(dataset, out, root, per_class)
        print(
            f"{dataset}: {written['train']:,} training and {written['test']:,} test images -> {out}; "
            f"train on them with python -m train data=folder data.path={out}"
        )


if __name__ == "__main__":
    main()
