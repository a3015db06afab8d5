"""HOG features + a linear SVM: the classical baseline, built by Hydra from conf/model/hog_svm.yaml."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from cnnlab.baselines.features import HogParams
from cnnlab.errors import ConfigError


class HogSVM:
    """HOG descriptors (plus an optional colour histogram) classified by a one-vs-rest linear SVM
    (sklearn's LinearSVC).

    The feature options are :class:`~cnnlab.baselines.features.HogParams`'s: ``grayscale`` (false:
    skimage's multichannel HOG), ``transform_sqrt`` (power-law compression before the gradients) and
    ``color_hist_bins`` (per-channel histogram bins appended to the HOG; 0 = none). ``features`` is the
    record's label: ``hog``, or ``hog+color_hist`` with the histogram.
    """

    task = "classical"  # cnnlab.tasks: fit, evaluated and predicted by cnnlab.baselines, not Lightning

    def __init__(
        self,
        orientations: int = 9,
        pixels_per_cell: int = 8,
        cells_per_block: int = 2,
        block_norm: str = "L2-Hys",
        grayscale: bool = False,
        transform_sqrt: bool = True,
        color_hist_bins: int = 8,
        C: float = 0.3,  # sklearn's name for the SVM's regularisation constant
        max_iter: int = 5000,
        standardize: bool = False,
        n_jobs: int = -1,
    ) -> None:
        self.hog = HogParams(
            orientations,
            pixels_per_cell,
            cells_per_block,
            block_norm,
            grayscale,
            transform_sqrt=transform_sqrt,
            color_hist_bins=color_hist_bins,
        )
        self.features = "hog+color_hist" if color_hist_bins else "hog"
        if not C > 0:
            raise ConfigError(f"model.C={C} is invalid; the SVM's regularisation constant must be > 0")
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ConfigError(f"model.max_iter={max_iter!r} is invalid; use a positive integer")
        if not isinstance(n_jobs, int) or n_jobs == 0:
            raise ConfigError(f"model.n_jobs={n_jobs!r} is invalid; use -1 (every core) or a count >= 1")
        self.C = C
        self.max_iter = max_iter
        self.standardize = standardize
        self.n_jobs = n_jobs

    def feature_settings(self) -> dict[str, Any]:
        """What the features depend on besides the images: the cache key."""
        import skimage

        return {"extractor": self.features, **asdict(self.hog), "skimage": skimage.__version__}

    def classifier(self, seed: int) -> Pipeline:
        """A fresh, unfitted classifier for the features."""
        steps: list[tuple[str, Any]] = [("scale", StandardScaler())] if self.standardize else []
        steps.append(("svm", LinearSVC(C=self.C, max_iter=self.max_iter, random_state=seed)))
        return Pipeline(steps)
