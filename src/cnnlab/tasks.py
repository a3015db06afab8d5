"""The tasks (classify, detect, segment, the classical baseline) and everything that differs by task.

A model class says what it does with a ``task`` class attribute (none: ``classify``); everything else
that depends on it is read from its :class:`Task` here: the LightningModule and fit, the data it
needs, the record fields of its figures, its evaluation, prediction and export, and its summary
lines. A new model of an existing task is one module and one yaml; a new task is one entry here.

This module sits low (below training and analysis) so that every layer can ask it; it names the
heavier code that implements a task as ``"module:attribute"`` strings, imported only when used
(``Task.resolve``). tests/test_tasks.py checks that every string resolves.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.runs.run_record import BEST_VAL_ACC, TASK, TEST_ACC, TEST_F1_MACRO, RunRecord

CLASSIFY, DETECT, SEGMENT, CLASSICAL = "classify", "detect", "segment", "classical"
IMAGES, CANVASES = "images", "canvases"  # what a data module holds (its ``holds`` attribute)
# what a classical run keeps instead of a checkpoint: its fitted sklearn pipeline
CLASSICAL_MODEL_FILE = "model.joblib"


@dataclass
class FitResult:
    """What a task's fit gives back: its record fields, apart from the live objects the evaluation after
    it takes (the test loop's (logits, labels), the run's open TensorBoard logger)."""

    record: RunRecord
    test_predictions: Any = None
    tensorboard: Any = None


@dataclass(frozen=True)
class Task:
    """One task: the code and record fields that differ by what a model predicts."""

    name: str  # the record's ``task`` and a model class's ``task`` attribute
    data: str  # IMAGES or CANVASES: what the data module must hold
    wrong_data: str  # the error when it holds the other kind, of {model}, {task} and {data}
    fit: str  # (cfg, model, datamodule, output_dir) -> FitResult | None
    module: str | None  # the LightningModule class (None: not a network)
    best_val_field: str  # the record field of the best validation figure (the checkpoint's)
    test_fields: Mapping[str, str]  # the test loop's metric -> its record field
    headline: tuple[tuple[str, str], ...]  # (label, record field) in the run's summary line
    evaluate: str  # the test-set analysis of a trained model (``python -m evaluate``)
    evaluation_line: str  # (eval_metrics) -> the evaluation's one line
    predict: str  # the prediction on a user's image files (``python -m predict``)
    export_refusal: str | None = None  # None: ``python -m export`` writes it; else why not
    # the record fields a network's fit leaves null because this task has no such figure
    absent_fields: tuple[str, ...] = field(default=())

    @property
    def is_network(self) -> bool:
        return self.module is not None

    def resolve(self, attribute: str) -> Any:
        """The object one of this task's ``"module:attribute"`` strings names, imported now."""
        return resolve(getattr(self, attribute))

    def check_data(self, datamodule: Any, model_name: str) -> None:
        """Detectors and U-Nets need canvases with boxes and masks; classifiers need whole-image labels."""
        if getattr(datamodule, "holds", IMAGES) != self.data:
            raise ConfigError(self.wrong_data.format(model=model_name, task=self.name, data=datamodule.name))

    def record_fields(self, best_score: float | None, test_metrics: Mapping[str, float]) -> RunRecord:
        """The record fields of this task's figures: the best validation score and the test metrics."""
        record: dict[str, Any] = dict.fromkeys(self.absent_fields)
        record[TASK] = self.name
        record[self.best_val_field] = float(best_score) if best_score is not None else None
        record.update({name: test_metrics.get(key) for key, name in self.test_fields.items()})
        if self.data == CANVASES:  # the dense tasks' test metrics come per class too (test/ap/<class>)
            record["per_class_test"] = {
                key.split("/", 1)[1]: value for key, value in test_metrics.items() if key.count("/") == 2
            }
        return record  # type: ignore[return-value]

    def summary_line(self, record: Mapping[str, Any]) -> str:
        """The one line printed at the end of a run (and for a run skipped as already finished)."""

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        debug_run = (
            f"debug run ({record.get('debug')}), not a result: " if record.get("status") == "debug" else ""
        )
        count = record.get("epochs")
        epochs = f"{count} epoch{'' if count == 1 else 's'} " if count is not None else ""
        resumed = record.get("train_time_resumed_s")
        after_resume = f" ({resumed:.1f} s after the resume)" if resumed is not None else ""
        figures = ", ".join(f"{label} {fmt(record.get(key))}" for label, key in self.headline)
        return (
            f"{debug_run}{record['model']} on {record['dataset']}: {figures}, "
            f"{record.get('params', 0):,} params, {epochs}in {record.get('train_time_s', 0):.1f} s"
            f"{after_resume} on {record.get('device', '?')} -> {record['run_dir']}"
        )


CLASSIFICATION_HEADLINE = (
    ("test acc", TEST_ACC),
    ("macro-F1", TEST_F1_MACRO),
    ("best val acc", BEST_VAL_ACC),
)
CLASSIFICATION_TEST_FIELDS = {"test/acc": TEST_ACC, "test/f1_macro": TEST_F1_MACRO}
# the classification fields a dense task's record holds as null (the results tables read them)
NOT_CLASSIFIED = (BEST_VAL_ACC, TEST_ACC, TEST_F1_MACRO)
NEEDS_CANVASES = (
    "model={model} ({task}) needs boxes and masks, which data={data} does not have; "
    "use data=mnist_canvas or data=fashion_canvas"
)
NEEDS_IMAGES = (
    "model={model} classifies whole images, but data={data} holds canvases of several objects; "
    "use model=detector or model=unet, or a classification dataset (data=mnist)"
)
# an exported file's metadata and check describe class logits; a detector's grid becomes boxes, and a U-Net's
# logits a mask at the image's size, only through cnnlab's decoding, which every user would have to rewrite
DENSE_NOT_EXPORTED = (
    "python -m export writes classifiers only, since its boxes or masks need cnnlab's decoding"
)

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name=CLASSIFY,
            data=IMAGES,
            wrong_data=NEEDS_IMAGES,
            fit="cnnlab.training.fit:fit_network",
            module="cnnlab.training.module:ClassifierModule",
            best_val_field=BEST_VAL_ACC,
            test_fields=CLASSIFICATION_TEST_FIELDS,
            headline=CLASSIFICATION_HEADLINE,
            evaluate="cnnlab.analysis.evaluation:evaluate_checkpoint",
            evaluation_line="cnnlab.analysis.evaluation:summary_line",
            predict="cnnlab.analysis.prediction:predict_files",
        ),
        Task(
            name=DETECT,
            data=CANVASES,
            wrong_data=NEEDS_CANVASES,
            fit="cnnlab.training.fit:fit_network",
            module="cnnlab.training.detection:DetectionModule",
            best_val_field="best_val_map_50",
            test_fields={"test/map": "test_map", "test/map_50": "test_map_50"},
            headline=(
                ("test mAP", "test_map"),
                ("mAP@0.5", "test_map_50"),
                ("best val mAP@0.5", "best_val_map_50"),
            ),
            evaluate="cnnlab.analysis.detection:evaluate_detection",
            evaluation_line="cnnlab.analysis.detection:summary_line",
            predict="cnnlab.analysis.dense_prediction:detect_files",
            export_refusal=DENSE_NOT_EXPORTED,
            absent_fields=NOT_CLASSIFIED,
        ),
        Task(
            name=SEGMENT,
            data=CANVASES,
            wrong_data=NEEDS_CANVASES,
            fit="cnnlab.training.fit:fit_network",
            module="cnnlab.training.segmentation:SegmentationModule",
            best_val_field="best_val_miou",
            test_fields={"test/miou": "test_miou", "test/pixel_acc": "test_pixel_acc"},
            headline=(
                ("test mIoU", "test_miou"),
                ("pixel acc", "test_pixel_acc"),
                ("best val mIoU", "best_val_miou"),
            ),
            evaluate="cnnlab.analysis.segmentation:evaluate_segmentation",
            evaluation_line="cnnlab.analysis.segmentation:summary_line",
            predict="cnnlab.analysis.dense_prediction:segment_files",
            export_refusal=DENSE_NOT_EXPORTED,
            absent_fields=NOT_CLASSIFIED,
        ),
        Task(
            name=CLASSICAL,
            data=IMAGES,
            wrong_data=NEEDS_IMAGES,
            fit="cnnlab.baselines.runner:fit_classical",
            module=None,
            best_val_field=BEST_VAL_ACC,
            test_fields=CLASSIFICATION_TEST_FIELDS,
            headline=CLASSIFICATION_HEADLINE,
            evaluate="cnnlab.baselines.trained:evaluate_classical",
            evaluation_line="cnnlab.analysis.evaluation:summary_line",
            predict="cnnlab.baselines.trained:predict_classical",
            export_refusal=(
                "a HOG + linear SVM run, not a network, so it has no ONNX or TorchScript form; use it with "
                "python -m predict / evaluate, or export a network run"
            ),
        ),
    )
}


def resolve(name: str) -> Any:
    """The object a ``"package.module:attribute"`` string names."""
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def get_task(name: str | None) -> Task:
    """The task of this name (None: ``classify``, as models without a ``task`` attribute)."""
    try:
        return TASKS[name or CLASSIFY]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}") from None


def task_of_model(model: Any) -> Task:
    """The task of a model or model class: its ``task`` attribute, ``classify`` without one."""
    return get_task(getattr(model, "task", CLASSIFY))


def task_of_record(record: Mapping[str, Any]) -> Task:
    """The task of a run record (read through ``read_run_record``, which fills in older records')."""
    return get_task(record.get(TASK))


def summary_line(record: Mapping[str, Any]) -> str:
    """A run's last line, in its task's figures."""
    return task_of_record(record).summary_line(record)


def classical_run(path: str | Path | None) -> Path | None:
    """The run directory of a classical run named by ``path`` (the directory or its model file), else None."""
    if path is None or str(path) == "":
        return None
    path = Path(path).expanduser()
    if path.is_file() and path.name == CLASSICAL_MODEL_FILE:
        return path.parent
    if path.is_dir() and (path / CLASSICAL_MODEL_FILE).is_file():
        return path
    return None


def task_of_trained(path: str | Path | None) -> Task | None:
    """What ``ckpt_path`` holds, before anything heavy loads: the classical task for a HOG + SVM run; None
    for a network checkpoint, whose model class names its task when it is loaded (``task_of_model``)."""
    return TASKS[CLASSICAL] if classical_run(path) is not None else None
