"""A fitted classical baseline back from its run directory: `python -m evaluate` and `python -m predict`
for ``model=hog_svm`` runs, which save ``model.joblib`` (the fitted sklearn pipeline) and no checkpoint.

The features and the data come from the run's composed config (``.hydra/config.yaml``), so no training
override needs repeating.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.tasks import CLASSICAL_MODEL_FILE as MODEL_FILE

log = logging.getLogger(__name__)


@dataclass
class TrainedClassical:
    """The fitted classifier, its feature extractor and the data module it was trained with."""

    classifier: Any  # sklearn Pipeline
    model: Any  # HogSVM: the feature settings
    datamodule: Any  # ImageDataModule
    run_dir: Path
    record: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return self.datamodule.classes

    def scores(self, images: Any, desc: str = "HOG") -> Any:
        """The SVM's decision values (N, classes) of uint8 (N, C, H, W) images (numpy)."""
        from cnnlab.baselines.features import extract_hog

        features = extract_hog(images, self.model.hog, n_jobs=self.model.n_jobs, desc=desc)
        return self.classifier.decision_function(features)


def load_classical(
    run_dir: Path, dataset: str | None = None, data_root: str | Path | None = None
) -> TrainedClassical:
    """The classifier of a classical run directory, with its feature settings and data module."""
    import joblib
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from cnnlab.errors import CheckpointError
    from cnnlab.runs.record import RUN_RECORD, read_run_record

    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise CheckpointError(
            f"{run_dir} has {MODEL_FILE} but no .hydra/config.yaml: pass the run directory that "
            "python -m train model=hog_svm wrote"
        )
    config = OmegaConf.load(config_file)
    if "paths" in config:  # this run directory, as Hydra named it then (a folder's split.csv is in it)
        config.paths.output_dir = str(run_dir)
    try:
        data_config = OmegaConf.create(OmegaConf.to_container(config.data, resolve=True))
        model_config = OmegaConf.create(OmegaConf.to_container(config.model, resolve=True))
    except Exception as error:
        raise CheckpointError(f"cannot read the data and model settings of {config_file}: {error}") from error
    trained_on = data_config.name
    if dataset is not None and dataset != trained_on:
        raise CheckpointError(
            f"{run_dir} was trained on data={trained_on}, not data={dataset}; "
            f"drop the data= override or pick a run trained on {dataset}"
        )
    if data_root is not None:
        data_config.root = str(data_root)
    try:
        classifier = joblib.load(run_dir / MODEL_FILE)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"cannot read {run_dir / MODEL_FILE}: it is corrupt or truncated ({reason[:200]}); "
            "train the run again (python -m train model=hog_svm ...)"
        ) from error
    record = read_run_record(run_dir) if (run_dir / RUN_RECORD).is_file() else {}
    return TrainedClassical(classifier, instantiate(model_config), instantiate(data_config), run_dir, record)


def evaluate_classical(
    run_dir: Path,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
) -> dict[str, Any]:
    """The test-set report of a classical run: what training writes to eval/, in a new output folder."""
    from cnnlab.analysis.evaluation import EVAL_METRICS, choose_output_dir
    from cnnlab.analysis.figures import plot_confusion_matrix
    from cnnlab.analysis.reports import write_classification_reports
    from cnnlab.runs.record import write_json_atomic
    from cnnlab.tasks import CLASSICAL, get_task

    trained = load_classical(run_dir, dataset, data_root)
    out = choose_output_dir(output_dir, run_dir, overwrite)
    datamodule = trained.datamodule
    if download:
        datamodule.download = True
        datamodule.prepare_data()
    datamodule.setup("test")  # reads the test files: a data problem stops us before anything is written
    split = datamodule.test_set.split
    predictions = trained.scores(split.images.numpy(), desc=f"HOG {datamodule.name} test").argmax(axis=1)
    out.mkdir(parents=True, exist_ok=True)
    names = trained.class_names
    summary = write_classification_reports(split.labels.numpy(), predictions, names, out)
    plot_confusion_matrix(summary["confusion_matrix"], names, out / "confusion_matrix.png")
    metrics = {
        "checkpoint": str(run_dir / MODEL_FILE),
        "model": trained.record.get("model", "hog_svm"),
        "dataset": datamodule.name,
        "images": len(split),
        "accuracy": summary["accuracy"],
        "f1_macro": summary["f1_macro"],
        "per_class_accuracy": summary["per_class_accuracy"],
        "top_confused_pairs": summary["confused_pairs"][:5],
        "skipped": {
            "errors, filters, feature maps, Grad-CAM, curves, ECE": "a linear SVM on HOG features has "
            "no probabilities, convolutions or training curves"
        },
        "output_dir": str(out),
    }
    write_json_atomic(out / EVAL_METRICS, metrics)
    print(get_task(CLASSICAL).resolve("evaluation_line")(metrics))
    return metrics


def predict_classical(
    run_dir: Path,
    image: str | Path | None,
    output: str | Path | None = None,
    overwrite: bool = False,
    top_k: int = 5,
    dataset: str | None = None,
) -> list[dict[str, Any]]:
    """Classify ``image`` (a file or a folder) with a classical run: the top-k classes by SVM score."""
    import numpy as np

    from cnnlab.analysis.prediction import (
        check_output,
        format_prediction,
        image_files,
        read_image,
        top_classes,
        write_predictions,
    )

    out = check_output(output, overwrite)
    files = image_files(image)
    trained = load_classical(run_dir, dataset)
    channels, size, _ = trained.datamodule.shape
    images = np.stack([read_image(path, channels, size).numpy() for path in files])
    scores = trained.scores(images)
    predictions = top_classes(files, scores, trained.class_names, top_k)
    for prediction in predictions:
        print(format_prediction(prediction, value="score"))
    if out is not None:
        write_predictions(predictions, out, value="score")
        print(f"{len(predictions)} predictions -> {out}")
    return predictions
