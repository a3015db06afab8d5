"""One classical run: features of the same train / validation / test split the networks use, fit, evaluate."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from omegaconf import DictConfig
from sklearn.exceptions import ConvergenceWarning

from cnnlab.analysis.reports import write_classification_reports
from cnnlab.baselines import features as hog_features
from cnnlab.baselines.cache import FeatureCache
from cnnlab.baselines.hog_svm import HogSVM
from cnnlab.baselines.trained import MODEL_FILE
from cnnlab.data import ImageDataModule
from cnnlab.errors import ConfigError
from cnnlab.runs.record import hydra_choice, write_json_atomic
from cnnlab.tasks import CLASSICAL, FitResult, get_task

log = logging.getLogger(__name__)


def split_features(
    model: HogSVM, datamodule: ImageDataModule, images: np.ndarray, cache: FeatureCache, split: str
) -> tuple[np.ndarray, bool, float]:
    """(features of every image of a file split, whether cached, seconds spent)."""
    started = time.perf_counter()
    features, cached = cache.get_or_compute(
        f"{datamodule.name}-{split}-{model.features}",
        images,
        model.feature_settings(),
        lambda: hog_features.extract_hog(
            images, model.hog, n_jobs=model.n_jobs, desc=f"HOG {datamodule.name} {split}"
        ),
    )
    return features, cached, time.perf_counter() - started


def fit_classical(cfg: DictConfig, model: Any, datamodule: ImageDataModule, output_dir: Path) -> FitResult:
    """Fit on the training images, score the validation images, test; the run-specific record fields."""
    if not isinstance(model, HogSVM):
        raise ConfigError(
            f"model={hydra_choice('model', '?')} builds a {type(model).__name__}, neither a torch module nor "
            f"a classical baseline; check its _target_ in conf/model/"
        )
    model.hog.check_fits(datamodule.shape[-1])
    cache = FeatureCache(cfg.paths.cache_dir)
    datamodule.setup("fit")
    train_split = datamodule.train_set.split
    all_features, cached, feature_time = split_features(
        model, datamodule, train_split.images.numpy(), cache, "train"
    )
    all_labels = train_split.labels.numpy()
    train_idx, val_idx = datamodule.train_indices.numpy(), datamodule.val_indices.numpy()

    classifier = model.classifier(cfg.seed)
    log.info("fitting %s on %d images of %d features", classifier, len(train_idx), all_features.shape[1])
    fit_start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported below, with the fix
        classifier.fit(all_features[train_idx], all_labels[train_idx])
    train_time = time.perf_counter() - fit_start
    svm = classifier.named_steps["svm"]
    converged = bool(np.max(svm.n_iter_) < model.max_iter)
    if not converged:
        log.warning(
            "the SVM stopped at model.max_iter=%d before converging; raise model.max_iter, "
            "lower model.C or set model.standardize=true",
            model.max_iter,
        )
    joblib.dump(classifier, output_dir / MODEL_FILE)

    val_acc = None
    if datamodule.has_validation:
        val_acc = float(np.mean(classifier.predict(all_features[val_idx]) == all_labels[val_idx]))
        log.info("validation accuracy %.4f on %d images", val_acc, len(val_idx))

    test_acc = test_f1 = None
    test_images = None
    if cfg.get("test", True):
        datamodule.setup("test")
        test_split = datamodule.test_set.split
        test_features, test_cached, test_time = split_features(
            model, datamodule, test_split.images.numpy(), cache, "test"
        )
        cached, feature_time = cached and test_cached, feature_time + test_time
        predictions = classifier.predict(test_features)
        eval_dir = output_dir / "eval"  # where the networks' evaluation writes the same files
        summary = write_classification_reports(
            test_split.labels.numpy(), predictions, datamodule.classes, eval_dir
        )
        if cfg.get("evaluate", True):
            _write_evaluation(summary, datamodule, eval_dir)
        test_acc, test_f1, test_images = summary["accuracy"], summary["f1_macro"], len(test_split)

    test_figures = {"test/acc": test_acc, "test/f1_macro": test_f1} if test_acc is not None else {}
    return FitResult(
        {
            "features": model.features,
            "feature_dim": int(all_features.shape[1]),
            "feature_params": model.feature_settings(),
            "features_cached": cached,
            "feature_time_s": round(feature_time, 2),
            "params": int(svm.coef_.size + svm.intercept_.size),
            "epochs": None,
            "C": model.C,
            "converged": converged,
            "train_time_s": round(train_time, 2),
            **get_task(CLASSICAL).record_fields(val_acc, test_figures),
            "train_images": len(train_idx),
            "val_images": len(val_idx),
            "test_images": test_images,
            "test_set_images": test_images,
            "device": f"cpu ({os.cpu_count()} cores)",
            "model_file": MODEL_FILE,
        }
    )


def _write_evaluation(summary: dict[str, Any], datamodule: ImageDataModule, eval_dir: Path) -> None:
    """The confusion-matrix figure and eval_metrics.json, as `python -m evaluate` writes them for networks."""
    from cnnlab.analysis.evaluation import EVAL_METRICS  # matplotlib: only when evaluating
    from cnnlab.analysis.figures import plot_confusion_matrix

    plot_confusion_matrix(summary["confusion_matrix"], datamodule.classes, eval_dir / "confusion_matrix.png")
    metrics = {
        "model": hydra_choice("model", "hog_svm"),
        "dataset": datamodule.name,
        "images": int(summary["confusion_matrix"].sum()),
        "accuracy": summary["accuracy"],
        "f1_macro": summary["f1_macro"],
        "per_class_accuracy": summary["per_class_accuracy"],
        "top_confused_pairs": summary["confused_pairs"][:5],
        "output_dir": str(eval_dir),
    }
    write_json_atomic(eval_dir / EVAL_METRICS, metrics)
