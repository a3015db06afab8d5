"""An on-disk cache of feature matrices, keyed by the images' content and the extractor's settings.

The key hashes the decoded uint8 images in full (cheap against the extraction: docs/exploratory-runs.md,
HOG extraction), so any change to the data files, however made, gives a new key; a size+mtime
fingerprint would be cheaper but can miss a copied or rewritten file. The key also holds the
extractor's parameters and skimage's version, whose HOG
implementation the features depend on. Features cover a whole file split (the training or the
test files), so a new validation split or classifier setting (``model.C``) reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def fingerprint(images: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and bytes."""
    digest = hashlib.sha256(f"{images.shape}|{images.dtype}".encode())
    digest.update(np.ascontiguousarray(images).data)
    return digest.hexdigest()


class FeatureCache:
    """Feature matrices as ``<name>-<key digest>.npy`` in one directory, with the key beside each."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory).expanduser()

    def path(self, name: str, key: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True).encode())
        return self.directory / f"{name}-{digest.hexdigest()[:24]}.npy"

    def load(self, path: Path, rows: int) -> np.ndarray | None:
        """The cached matrix, or None when absent or unreadable (it is then recomputed)."""
        if not path.is_file():
            return None
        try:
            features = np.load(path)
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable feature cache %s (%s)", path, error)
            return None
        if features.ndim != 2 or len(features) != rows:
            log.warning("ignoring feature cache %s: shape %s for %d images", path, features.shape, rows)
            return None
        return features

    def save(self, path: Path, features: np.ndarray, key: dict[str, Any]) -> None:
        """Write atomically; a cache that cannot be written costs time, never the run."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=self.directory, prefix=f".{path.name}.", delete=False
            ) as file:
                np.save(file, features)
            os.replace(file.name, path)
            path.with_suffix(".json").write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
        except OSError as error:
            log.warning(
                "could not write the feature cache in %s (%s); set paths.cache_dir or CNNLAB_CACHE to a "
                "writable folder to reuse features across runs",
                self.directory,
                error,
            )

    def get_or_compute(
        self, name: str, images: np.ndarray, settings: dict[str, Any], compute: Callable[[], np.ndarray]
    ) -> tuple[np.ndarray, bool]:
        """(features, whether they came from the cache) for ``images`` under ``settings``."""
        key = {**settings, "images": fingerprint(images), "num_images": len(images)}
        path = self.path(name, key)
        features = self.load(path, len(images))
        if features is not None:
            log.info("%s: features read from the cache %s", name, path)
            return features, True
        features = compute()
        self.save(path, features, key)
        return features, False
