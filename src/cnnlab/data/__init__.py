"""Data: on-disk readers, transforms and the LightningDataModule.

The names below load on first use, so that ``cnnlab.data.layout`` (which files a dataset needs) can be
imported without torch: ``python -m train`` checks the data root before the heavy imports.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnlab.data.datamodule import ImageDataModule
    from cnnlab.data.readers import ImageSplit
    from cnnlab.data.transforms import Normalize

__all__ = ["ImageDataModule", "ImageSplit", "Normalize"]

_HOMES = {"ImageDataModule": "datamodule", "ImageSplit": "readers", "Normalize": "transforms"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
