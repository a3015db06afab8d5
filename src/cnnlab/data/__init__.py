"""Data: on-disk readers, transforms and the LightningDataModule."""

from cnnlab.data.datamodule import ImageDataModule
from cnnlab.data.readers import ImageSplit
from cnnlab.data.transforms import Normalize

__all__ = ["ImageDataModule", "ImageSplit", "Normalize"]
