"""`python -m evaluate`: a checkpoint's test-set report, figures and TensorBoard images in one folder."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import torch
from torchmetrics.classification import MulticlassCalibrationError

from cnnlab.analysis import figures
from cnnlab.analysis.checkpoints import TrainedModel, load_trained_model
from cnnlab.analysis.curves import diagnose_fit, plot_curves, read_history
from cnnlab.analysis.gradcam import gradcam_maps, stage_activations
from cnnlab.analysis.inference import pick_device, predict_logits, trained_precision
from cnnlab.analysis.layers import first_conv, gradcam_layer, stages
from cnnlab.analysis.reports import write_classification_reports
from cnnlab.analysis.tensorboard import SummaryWriter, log_evaluation
from cnnlab.errors import ConfigError
from cnnlab.runs.record import (
    hparam_metrics,
    hparams,
    saved_choices,
    write_json_atomic,
)
from cnnlab.tasks import CLASSIFY

log = logging.getLogger(__name__)

EVAL_METRICS = "eval_metrics.json"
ERRORS_SHOWN = 16
EVIDENCE_IMAGES = 4  # correct and wrong images each in class_evidence.png
CALIBRATION_BINS = 15


def choose_output_dir(requested: str | Path | None, parent: Path, overwrite: bool) -> Path:
    """``requested`` (must be new or empty unless ``overwrite``), else ``parent``/eval, else eval-<n>."""
    if requested is not None:
        out = Path(requested).expanduser()
        if out.is_file() or (out.is_dir() and any(out.iterdir()) and not overwrite):
            raise ConfigError(
                f"output_dir={out} already holds files; pass overwrite=true to replace them, "
                "or choose another output_dir (nothing was written)"
            )
        return out
    out = parent / "eval"
    if overwrite or not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return out
    number = 1
    while (parent / f"eval-{number}").exists():
        number += 1
    return parent / f"eval-{number}"


def writable_home(model: TrainedModel) -> Path:
    """Where an evaluation goes by default: the run directory, or beside a loose checkpoint. An archived
    run (e.g. docs/runs/<name>) is left as published: its evaluation goes to outputs/evaluate/<name>."""
    if model.archived and model.run_dir is not None:
        return Path("outputs") / "evaluate" / model.run_dir.name
    return model.run_dir or model.checkpoint_path.parent


def _tensorboard_dir(model: TrainedModel, out: Path) -> Path:
    """The run's TensorBoard directory (one event history per run); beside the evaluation otherwise."""
    return model.run_dir / "tensorboard" if model.run_dir and not model.archived else out / "tensorboard"


def evaluate_checkpoint(
    ckpt_path: str | Path | None,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
    batch_size: int = 256,
    device: str = "auto",
    tensorboard: bool | SummaryWriter = True,
    test_predictions: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Test the checkpoint once and write reports, figures and eval_metrics.json; returns those metrics.

    TensorBoard images and hparams go to the run's tensorboard/ (or ``<output_dir>/tensorboard`` for a
    checkpoint outside a run directory) when ``tensorboard`` is set, or through the given open writer
    (training's: the run keeps one event file). ``test_predictions``: the
    (logits, labels) of this checkpoint over the whole test set in order, as training's test loop
    computed them; they replace a second pass over the test set.
    """
    model = load_trained_model(ckpt_path, dataset=dataset, data_root=data_root)
    datamodule = model.datamodule
    out = choose_output_dir(output_dir, writable_home(model), overwrite)
    if download:
        datamodule.download = True
        datamodule.prepare_data()
    if model.task.name != CLASSIFY:  # detect, segment: their own analysis, named by their task
        return _evaluate_dense(model, out, pick_device(device), batch_size, tensorboard)
    datamodule.setup("test")  # reads the test files: a data problem stops us before anything is written
    test_set = datamodule.test_set
    assert test_set is not None
    images = test_set.split.images[test_set.indices]
    labels = test_set.split.labels[test_set.indices]
    torch_device = pick_device(device)
    if _matches(test_predictions, labels):
        logits = test_predictions[0]
    else:
        precision = trained_precision(model.config.get("trainer", {}), torch_device)
        logits = predict_logits(model.net, images, datamodule.normalize, torch_device, batch_size, precision)
    probabilities = logits.softmax(dim=-1)
    confidences, predictions = probabilities.max(dim=-1)

    out.mkdir(parents=True, exist_ok=True)
    names = model.class_names
    summary = write_classification_reports(labels.numpy(), predictions.numpy(), names, out)
    pictures = {
        "confusion_matrix": figures.plot_confusion_matrix(
            summary["confusion_matrix"], names, out / "confusion_matrix.png"
        )
    }
    pictures["errors"] = _errors(images, labels, predictions, confidences, names, out)
    skipped: dict[str, str] = {}
    pictures.update(_network_views(model, images, labels, probabilities, torch_device, out, skipped))
    fit = _curves(model.run_dir, out, skipped)

    record = model.record
    ece = MulticlassCalibrationError(len(names), n_bins=CALIBRATION_BINS, norm="l1")(probabilities, labels)
    metrics = {
        "checkpoint": str(model.checkpoint_path),
        "model": record.get("model", model.model_name),
        "dataset": datamodule.name,
        "epoch": model.epoch + 1,
        "images": len(labels),
        "accuracy": summary["accuracy"],
        "f1_macro": summary["f1_macro"],
        "ece": float(ece),
        "per_class_accuracy": summary["per_class_accuracy"],
        "top_confused_pairs": summary["confused_pairs"][:5],
        "fit": fit,
        "skipped": skipped,
        "output_dir": str(out),
    }
    write_json_atomic(out / EVAL_METRICS, metrics)
    for reason, names in _by_reason(skipped).items():  # one line for the three views an MLP lacks
        log.info("%s skipped: %s", _listed(names), reason)
    if tensorboard is not False:
        target = _tensorboard_dir(model, out) if tensorboard is True else tensorboard
        _log_to_tensorboard(model, record, pictures, metrics, target, out.name)
    log.info(fit["line"])
    log.info(model.task.resolve("evaluation_line")(metrics))
    return metrics


def _matches(test_predictions: tuple[torch.Tensor, torch.Tensor] | None, labels: torch.Tensor) -> bool:
    """Whether the given (logits, labels) cover exactly this test set, in its order."""
    if test_predictions is None:
        return False
    logits, given = test_predictions
    if logits.shape[0] != len(labels) or not torch.equal(given.cpu(), labels):
        log.info("the test loop's predictions do not cover the test set in order: predicting again")
        return False
    return True


def _evaluate_dense(
    model: TrainedModel, out: Path, device: torch.device, batch_size: int, tensorboard: bool
) -> dict[str, Any]:
    """A detector's or U-Net's test-canvas analysis (its task's: analysis/detection.py, segmentation.py)."""
    result = model.task.resolve("evaluate")(model, out, device, batch_size)
    record = model.record
    metrics = {
        "checkpoint": str(model.checkpoint_path),
        "model": record.get("model", model.model_name),
        "dataset": model.datamodule.name,
        "epoch": model.epoch + 1,
        **result["metrics"],
        "output_dir": str(out),
    }
    write_json_atomic(out / EVAL_METRICS, metrics)
    if tensorboard:
        from cnnlab.analysis.tensorboard import log_evaluation

        final = {
            f"hparams/eval/{key}": float(value)
            for key, value in metrics.items()
            if key in ("map", "map_50", "map_75", "miou", "pixel_accuracy")
        }
        images = {f"eval/{name}": path for name, path in result["pictures"].items()}
        log_dir = _tensorboard_dir(model, out)
        log_evaluation(log_dir, images, hparams(model.config), final, step=model.global_step)
    print(model.task.resolve("evaluation_line")(metrics))
    return metrics


def summary_line(metrics: dict[str, Any]) -> str:
    """One line of eval_metrics.json; ECE only where there are probabilities (not for an SVM)."""
    pairs = ", ".join(
        f"{p['true']}->{p['predicted']} ({p['count']})" for p in metrics["top_confused_pairs"][:3]
    )
    ece = f", ECE {metrics['ece']:.4f}" if metrics.get("ece") is not None else ""
    return (
        f"{metrics['model']} on {metrics['dataset']} ({Path(metrics['checkpoint']).name}): test acc "
        f"{metrics['accuracy']:.4f}, macro-F1 {metrics['f1_macro']:.4f}{ece} on "
        f"{metrics['images']:,} images; most confused: {pairs or 'none'} -> {metrics['output_dir']}"
    )


def _errors(
    images: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    confidences: torch.Tensor,
    names: list[str],
    out: Path,
) -> Path:
    """errors.csv (every mistake, most confident first) and errors.png (the first ERRORS_SHOWN)."""
    wrong = (predictions != labels).nonzero().flatten()
    wrong = wrong[confidences[wrong].argsort(descending=True, stable=True)]
    with (out / "errors.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["rank", "test_index", "true", "predicted", "confidence"])
        for rank, index in enumerate(wrong.tolist(), start=1):
            writer.writerow(
                [
                    rank,
                    index,
                    names[labels[index]],
                    names[predictions[index]],
                    f"{float(confidences[index]):.6f}",
                ]
            )
    shown = wrong[:ERRORS_SHOWN]
    return figures.plot_errors(
        images[shown].float() / 255,
        [names[i] for i in labels[shown]],
        [names[i] for i in predictions[shown]],
        confidences[shown].tolist(),
        shown.tolist(),
        out / "errors.png",
    )


def _network_views(
    model: TrainedModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    probabilities: torch.Tensor,
    device: torch.device,
    out: Path,
    skipped: dict[str, str],
) -> dict[str, Path]:
    """filters.png, feature_maps.png and class_evidence.png; skipped (with the reason) without convs."""
    net, names, normalize = model.net, model.class_names, model.datamodule.normalize
    conv = first_conv(net)
    target_layer = gradcam_layer(net)
    if conv is None or target_layer is None:
        reason = f"{model.model_name} has no convolution layer: no filters, feature maps or Grad-CAM"
        skipped.update({"filters.png": reason, "feature_maps.png": reason, "class_evidence.png": reason})
        return {}
    pictures: dict[str, Path] = {}
    kernels = conv.weight
    pictures["filters"] = figures.plot_filters(
        kernels,
        out / "filters.png",
        f"first conv layer: {kernels.shape[0]} kernels of {tuple(kernels.shape[1:])} (each min-max scaled)",
    )
    predictions = probabilities.argmax(dim=-1)
    stage_list = stages(net)
    first = images[:1]
    activations = stage_activations(net, [m for _, m in stage_list], normalize(first.to(device)))
    caption = (
        f"test image #0 (true {names[labels[0]]}, predicted {names[predictions[0]]} "
        f"at {float(probabilities[0].max()):.2f})"
    )
    pictures["feature_maps"] = figures.plot_feature_maps(
        first[0].float() / 255,
        [(name, act[0]) for (name, _), act in zip(stage_list, activations, strict=True)],
        out / "feature_maps.png",
        caption,
    )
    pictures["class_evidence"] = _class_evidence(
        model, target_layer, images, labels, probabilities, device, out
    )
    return pictures


def _class_evidence(
    model: TrainedModel,
    layer: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    probabilities: torch.Tensor,
    device: torch.device,
    out: Path,
) -> Path:
    """Grad-CAM for the true class and the predicted class (the runner-up when the prediction is right)."""
    names = model.class_names
    confidences, predictions = probabilities.max(dim=-1)
    correct = (predictions == labels).nonzero().flatten().tolist()
    one_per_class: dict[int, int] = {}
    for index in correct:
        one_per_class.setdefault(int(labels[index]), index)
    chosen_correct = list(one_per_class.values())[:EVIDENCE_IMAGES]
    wrong = (predictions != labels).nonzero().flatten()
    chosen_wrong = wrong[confidences[wrong].argsort(descending=True, stable=True)][:EVIDENCE_IMAGES].tolist()
    chosen = torch.tensor(chosen_correct + chosen_wrong, dtype=torch.long)
    runner_up = probabilities.topk(2, dim=-1).indices[:, 1]
    other = torch.where(predictions == labels, runner_up, predictions)[chosen]
    inputs = model.datamodule.normalize(images[chosen].to(device))
    true_maps = gradcam_maps(model.net, layer, inputs, labels[chosen])
    other_maps = gradcam_maps(model.net, layer, inputs, other)
    rows, titles = [], []
    for row, index in enumerate(chosen.tolist()):
        true, predicted, second = int(labels[index]), int(predictions[index]), int(other[row])
        p = probabilities[index]
        label = "2nd" if true == predicted else "pred"
        rows.append(
            [
                (f"true {names[true]} ({float(p[true]):.2f})", true_maps[row]),
                (f"{label} {names[second]} ({float(p[second]):.2f})", other_maps[row]),
            ]
        )
        titles.append(f"#{index} {'correct' if true == predicted else 'WRONG'}")
    return figures.plot_class_evidence(images[chosen].float() / 255, rows, titles, out / "class_evidence.png")


def _by_reason(skipped: dict[str, str]) -> dict[str, list[str]]:
    """The skipped files grouped by why, in the order they were skipped."""
    grouped: dict[str, list[str]] = {}
    for name, reason in skipped.items():
        grouped.setdefault(reason, []).append(name)
    return grouped


def _listed(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _curves(run_dir: Path | None, out: Path, skipped: dict[str, str]) -> dict[str, str]:
    """curves.png and fit_diagnosis.txt from the run's csv/metrics.csv."""
    history = read_history(run_dir / "csv" / "metrics.csv") if run_dir else None
    if history is None:
        skipped["curves.png"] = (
            "no csv/metrics.csv in the run directory (train with logger=default or logger=csv)"
            if run_dir
            else "the checkpoint is not inside a run directory, so there are no logged curves"
        )
        return {"verdict": "unknown", "line": "fit: unknown (no logged curves)"}
    diagnosis = diagnose_fit(history)
    plot_curves(history, diagnosis, out / "curves.png")
    (out / "fit_diagnosis.txt").write_text(diagnosis.line + "\n")
    return {"verdict": diagnosis.verdict, "line": diagnosis.line}


def _log_to_tensorboard(
    model: TrainedModel,
    record: dict[str, Any],
    pictures: dict[str, Path],
    metrics: dict[str, Any],
    log_dir: Path | SummaryWriter,
    name: str,
) -> None:

    final = {
        "hparams/eval/acc": metrics["accuracy"],
        "hparams/eval/f1_macro": metrics["f1_macro"],
        "hparams/eval/ece": metrics["ece"],
    }
    best = record.get("best_checkpoint")
    tested_here = (
        best is not None
        and model.run_dir is not None
        and ((model.run_dir / best).resolve() == model.checkpoint_path.resolve())
    )
    # this entry replaces training's: the same columns (training's test figures only when they are of
    # this checkpoint), beside the evaluation's own
    tested = record if tested_here else {"best_val_acc": record.get("best_val_acc")}
    final.update(hparam_metrics(tested))
    # tags under the evaluation's folder name (eval, eval-1, ...): a second evaluation adds its own images
    images = {f"{name}/{picture}": path for picture, path in pictures.items()}
    run_hparams = hparams(model.config, saved_choices(model.run_dir), record.get("overrides") or ())
    log_evaluation(log_dir, images, run_hparams, final, step=model.global_step)
    where = log_dir if isinstance(log_dir, Path) else log_dir.log_dir
    log.info("TensorBoard: %d images and the hparams with final metrics in %s", len(images), where)
