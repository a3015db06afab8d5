"""HOG features (plus an optional colour histogram) of whole image splits, extracted in parallel."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from skimage.color import rgb2gray
from skimage.feature import hog
from tqdm.auto import tqdm

from cnnlab.errors import ConfigError

log = logging.getLogger(__name__)

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")


@dataclass(frozen=True)
class HogParams:
    """skimage's HOG settings (square cells and blocks), whether colour is dropped first, and an
    optional colour histogram appended to the HOG descriptor.

    ``grayscale=False`` runs skimage's multichannel HOG (per pixel, the channel with the strongest
    gradient). ``transform_sqrt`` is skimage's power-law (gamma) compression: the square root of each
    pixel is taken before the gradients, which damps strong illumination edges against texture.
    ``color_hist_bins`` > 0 appends, per channel, a histogram of that many equal-width intensity bins
    (see :func:`color_histogram`; one grey histogram for single-channel images); 0 appends nothing.
    The defaults are the measured best on CIFAR-10 (docs/exploratory-runs.md says by how much).
    """

    orientations: int = 9
    pixels_per_cell: int = 8
    cells_per_block: int = 2
    block_norm: str = "L2-Hys"
    grayscale: bool = False
    transform_sqrt: bool = True
    color_hist_bins: int = 8

    def __post_init__(self) -> None:
        for name in ("orientations", "pixels_per_cell", "cells_per_block"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"model.{name}={getattr(self, name)!r} is invalid; use a positive integer")
        if self.block_norm not in BLOCK_NORMS:
            raise ConfigError(
                f"model.block_norm={self.block_norm!r} is invalid; use one of {', '.join(BLOCK_NORMS)}"
            )
        for name in ("grayscale", "transform_sqrt"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"model.{name}={getattr(self, name)!r} is invalid; use true or false")
        bins = self.color_hist_bins
        if isinstance(bins, bool) or not isinstance(bins, int) or not 0 <= bins <= 256:
            raise ConfigError(
                f"model.color_hist_bins={bins!r} is invalid; use 0 (no colour histogram) or a bin count "
                f"from 1 to 256"
            )

    def check_fits(self, image_size: int) -> None:
        """Fail early when a block does not fit in the image (skimage would return no features)."""
        cells = image_size // self.pixels_per_cell
        if cells < self.cells_per_block:
            raise ConfigError(
                f"HOG blocks of {self.cells_per_block}x{self.cells_per_block} cells of "
                f"{self.pixels_per_cell} pixels do not fit in {image_size}x{image_size} images; "
                f"lower model.pixels_per_cell or model.cells_per_block"
            )


def hog_of(image: np.ndarray, params: HogParams) -> np.ndarray:
    """The HOG descriptor of one uint8 (C, H, W) image."""
    hwc = image.transpose(1, 2, 0)
    if hwc.shape[-1] == 1:
        pixels, channel_axis = hwc[..., 0] / 255.0, None
    elif params.grayscale:
        pixels, channel_axis = rgb2gray(hwc), None
    else:  # skimage keeps, per pixel, the channel with the strongest gradient
        pixels, channel_axis = hwc / 255.0, -1
    return hog(
        pixels,
        orientations=params.orientations,
        pixels_per_cell=(params.pixels_per_cell, params.pixels_per_cell),
        cells_per_block=(params.cells_per_block, params.cells_per_block),
        block_norm=params.block_norm,
        transform_sqrt=params.transform_sqrt,
        channel_axis=channel_axis,
    )


def color_histogram(image: np.ndarray, bins: int) -> np.ndarray:
    """Per-channel histograms of one uint8 (C, H, W) image: ``bins`` equal-width bins over 0-255 per
    channel, as the square roots of the fractions of pixels (C * bins values; each channel's part has
    unit L2 norm, like a HOG block, so neither part swamps the other in a linear SVM)."""
    channels = image.reshape(image.shape[0], -1)
    quantised = channels.astype(np.int32) * bins // 256
    counts = np.stack([np.bincount(channel, minlength=bins) for channel in quantised])
    return np.sqrt(counts / channels.shape[1]).ravel()


def descriptor_of(image: np.ndarray, params: HogParams) -> np.ndarray:
    """The whole feature vector of one uint8 (C, H, W) image: HOG, then the colour histogram if any."""
    hog_features = hog_of(image, params)
    if not params.color_hist_bins:
        return hog_features
    return np.concatenate([hog_features, color_histogram(image, params.color_hist_bins)])


def _hog_chunk(images: np.ndarray, params: HogParams) -> np.ndarray:
    return np.stack([descriptor_of(image, params) for image in images]).astype(np.float32)


def extract_hog(
    images: np.ndarray, params: HogParams, n_jobs: int = -1, chunk_size: int = 2000, desc: str = "HOG"
) -> np.ndarray:
    """(N, F) float32 descriptors (:func:`descriptor_of`) of uint8 (N, C, H, W) images; ``n_jobs=-1``
    uses every core.

    Images go to worker processes in chunks (skimage's HOG is per image and holds the GIL), and the
    chunks come back in order, so row i is image i.
    """
    params.check_fits(images.shape[-1])
    started = time.perf_counter()
    chunks = [images[start : start + chunk_size] for start in range(0, len(images), chunk_size)]
    results = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(_hog_chunk)(c, params) for c in chunks)
    done: list[np.ndarray] = []
    with tqdm(total=len(images), desc=desc, unit="img", disable=not sys.stderr.isatty()) as bar:
        for features in results:
            done.append(features)
            bar.update(len(features))
    features = np.concatenate(done)
    log.info(
        "%s: %d images -> %d features each in %.1f s",
        desc,
        len(images),
        features.shape[1],
        time.perf_counter() - started,
    )
    return features
