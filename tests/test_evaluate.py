"""`python -m evaluate` and `python -m predict` end to end on a tiny trained run, and their bad inputs."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from cnnlab.analysis import evaluation
from cnnlab.analysis.checkpoints import load_trained_model
from cnnlab.analysis.inference import predict_logits, trained_precision
from cnnlab.data import readers
from cnnlab.errors import CheckpointError
from cnnlab.runs.record import read_run_record, resolve_checkpoint_path
from cnnlab.tasks import summary_line
from tests.conftest import TINY, run_cli, run_entry

TABLES = [
    "classification_report.txt",
    "classification_report.json",
    "confusion_matrix.csv",
    "confused_pairs.csv",
    "errors.csv",
    "eval_metrics.json",
    "fit_diagnosis.txt",
]
PICTURES = [
    "confusion_matrix.png",
    "errors.png",
    "filters.png",
    "feature_maps.png",
    "class_evidence.png",
    "curves.png",
]
TB_IMAGES = [
    "eval/confusion_matrix",
    "eval/errors",
    "eval/filters",
    "eval/feature_maps",
    "eval/class_evidence",
]


# what the training run's own evaluation did, seen from inside (filled by the `run` fixture)
TRAINING = {"predict_logits_calls": 0, "event_files": []}


def train(tiny_data: Path, run_dir: Path, *overrides: str) -> dict:
    with pytest.MonkeyPatch.context() as patch:
        args = [f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", *TINY, "data=mnist", *overrides]

        def counted(*args, **kwargs):
            TRAINING["predict_logits_calls"] += 1
            return predict_logits(*args, **kwargs)

        patch.setattr(evaluation, "predict_logits", counted)
        run_entry("train", args, patch)
    return read_run_record(run_dir)


@pytest.fixture(scope="module")
def run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SmallCNN run of 2 epochs with TensorBoard and CSV logs, analysed by training itself."""
    run_dir = tmp_path_factory.mktemp("evaluate") / "run"
    overrides = ["model=smallcnn", "trainer.max_epochs=2", "logger=default", "evaluate=true"]
    train(tiny_data, run_dir, *overrides, "trainer.log_every_n_steps=2")
    TRAINING["event_files"] = sorted(p.name for p in (run_dir / "tensorboard").glob("events.out.tfevents.*"))
    return run_dir


def test_training_evaluates_from_its_test_loop_and_logs_everything_once(run: Path) -> None:
    # the evaluation took the test loop's logits: no second pass over the test set
    assert TRAINING["predict_logits_calls"] == 0
    # training, test, hparams and the evaluation's images went through one writer: one event file
    assert len(TRAINING["event_files"]) == 1
    record = read_run_record(run)
    log = (run / "train.log").read_text()
    eval_line = evaluation.summary_line(json.loads((run / "eval" / "eval_metrics.json").read_text()))
    run_line = summary_line(record)
    assert eval_line in log and run_line in log and log.rstrip().endswith(run_line)  # the run's last line
    # no Lightning tips, no metric objects in the model summary (its network rows stay)
    assert "Tip" not in log and "MulticlassAccuracy" not in log and "net.stages" in log
    first = next(line for line in log.splitlines() if "cnnlab.training.fit" in line)
    for choice in ("smallcnn on mnist", "sgd lr 0.1", "cosine schedule", "2 epochs", "on cpu"):
        assert choice in first
    # the training loss and the learning rate every trainer.log_every_n_steps (2) of the 10 steps
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss_step")] == [1, 3, 5, 7, 9]
    assert len(events.Scalars("lr-SGD")) == 5
    assert len(events.Scalars("train/loss")) == 2  # the epoch figures as before


def read_matrix(path: Path) -> tuple[list[str], np.ndarray]:
    rows = list(csv.reader(path.open()))
    return rows[0][1:], np.array([[int(v) for v in row[1:]] for row in rows[1:]])


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def evaluate(args: list[str]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        run_entry("evaluate", args, patch)


def predict(args: list[str]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        run_entry("predict", args, patch)


def test_training_writes_a_consistent_evaluation(run: Path) -> None:
    eval_dir, record = run / "eval", read_run_record(run)
    for name in TABLES + PICTURES:
        assert (eval_dir / name).is_file(), name
    metrics = json.loads((eval_dir / "eval_metrics.json").read_text())
    # the best checkpoint reproduces the test accuracy training recorded
    assert metrics["accuracy"] == pytest.approx(record["test_acc"], abs=1e-3)
    assert metrics["f1_macro"] == pytest.approx(record["test_f1_macro"], abs=1e-3)
    assert metrics["images"] == record["test_images"] == 100 and 0 <= metrics["ece"] <= 1
    names, matrix = read_matrix(eval_dir / "confusion_matrix.csv")
    assert names == [str(d) for d in range(10)]
    assert matrix.sum() == 100 and np.trace(matrix) / matrix.sum() == pytest.approx(metrics["accuracy"])
    report = json.loads((eval_dir / "classification_report.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["accuracy"])
    assert metrics["fit"]["verdict"] in {"underfitting", "good fit", "overfitting"}
    assert (eval_dir / "fit_diagnosis.txt").read_text().strip() == metrics["fit"]["line"]


def test_errors_are_the_models_real_mistakes_most_confident_first(run: Path, tiny_data: Path) -> None:
    errors = list(csv.DictReader((run / "eval" / "errors.csv").open()))
    _, matrix = read_matrix(run / "eval" / "confusion_matrix.csv")
    assert len(errors) == matrix.sum() - np.trace(matrix)
    confidences = [float(e["confidence"]) for e in errors]
    assert confidences == sorted(confidences, reverse=True)
    model = load_trained_model(run / read_run_record(run)["best_checkpoint"])
    test = readers.read_mnist(tiny_data, train=False)
    indices = [int(e["test_index"]) for e in errors]
    probabilities = predict_logits(
        model.net, test.images[indices], model.datamodule.normalize, torch.device("cpu")
    ).softmax(-1)
    for error, p in zip(errors, probabilities, strict=True):
        assert error["true"] == str(int(test.labels[int(error["test_index"])]))
        assert error["predicted"] == str(int(p.argmax())) != error["true"]
        assert float(error["confidence"]) == pytest.approx(float(p.max()), abs=1e-5)


def test_pictures_decode_and_reach_tensorboard(run: Path) -> None:
    sizes = {}
    for name in PICTURES:
        with Image.open(run / "eval" / name) as image:
            image.load()
            assert image.width >= 300 and image.height >= 200, name
            sizes[name.removesuffix(".png")] = image.size
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert set(TB_IMAGES) <= set(events.Tags()["images"])
    for tag in TB_IMAGES:
        logged = events.Images(tag)[-1]
        assert (logged.width, logged.height) == sizes[tag.removeprefix("eval/")]
    metadata = events.SummaryMetadata("_hparams_/session_start_info")
    assert metadata.plugin_data.plugin_name == "hparams"
    session = plugin_data_pb2.HParamsPluginData.FromString(metadata.plugin_data.content).session_start_info
    # what tells runs apart, not the flattened config: group choices, key settings, overrides
    assert (
        session.hparams["model"].string_value == "smallcnn"
        and session.hparams["data"].string_value == "mnist"
    )
    assert session.hparams["epochs"].number_value == 2 and session.hparams["batch_size"].number_value == 32
    assert session.hparams["data.val_size"].number_value == 40 and "data.root" not in session.hparams
    assert not any("_target_" in key or key.startswith("callbacks.") for key in session.hparams)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/experiment").plugin_data.content
    ).experiment
    tags = {info.name.tag for info in experiment.metric_infos}
    assert {"hparams/best_val_acc", "hparams/test_acc", "hparams/test_f1_macro"} <= tags
    record = read_run_record(run)
    assert events.Scalars("hparams/test_acc")[-1].value == pytest.approx(record["test_acc"])
    assert events.Scalars("hparams/best_val_acc")[-1].value == pytest.approx(record["best_val_acc"])
    metrics = json.loads((run / "eval" / "eval_metrics.json").read_text())
    assert events.Scalars("hparams/eval/acc")[-1].value == pytest.approx(metrics["accuracy"])
    assert events.Scalars("hparams/eval/ece")[-1].value == pytest.approx(metrics["ece"], abs=1e-6)


def test_evaluate_entry_never_overwrites_a_previous_evaluation(run: Path, capsys) -> None:
    before = digest(run / "eval")
    evaluate([f"ckpt_path={run / read_run_record(run)['best_checkpoint']}"])
    assert digest(run / "eval") == before
    again = json.loads((run / "eval-1" / "eval_metrics.json").read_text())
    assert again["accuracy"] == json.loads((run / "eval" / "eval_metrics.json").read_text())["accuracy"]
    assert "most confused" in capsys.readouterr().out
    # the second evaluation's images under their own tags, the first's left as they were
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images("eval/confusion_matrix")) == 1
    assert len(events.Images("eval-1/confusion_matrix")) == 1


def test_evaluate_into_a_new_folder_logs_a_full_hparams_entry(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "analysis"
    checkpoint = tmp_path / "copy.ckpt"  # outside its run directory: no curves, its own TensorBoard log
    checkpoint.write_bytes((run / read_run_record(run)["best_checkpoint"]).read_bytes())
    evaluate([f"ckpt_path={checkpoint}", f"output_dir={out}", "data=mnist"])
    metrics = json.loads((out / "eval_metrics.json").read_text())
    assert "curves.png" in metrics["skipped"] and not (out / "curves.png").exists()
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/experiment").plugin_data.content
    ).experiment
    assert {"hparams/eval/acc", "hparams/eval/ece"} <= {m.name.tag for m in experiment.metric_infos}


def test_predict_matches_the_model_on_the_test_tensor(run: Path, tiny_data: Path, tmp_path: Path) -> None:
    test = readers.read_mnist(tiny_data, train=False)
    folder = tmp_path / "digits"
    folder.mkdir()
    for index in range(5):
        Image.fromarray(test.images[index, 0].numpy()).save(folder / f"test_{index}.png")
    (folder / "notes.txt").write_text("not an image, ignored in a folder")
    output = tmp_path / "preds.csv"
    predict([f"ckpt_path={run}", f"image={folder}", f"output={output}"])
    rows = list(csv.DictReader(output.open()))
    assert [Path(r["file"]).name for r in rows] == [f"test_{i}.png" for i in range(5)]
    model = load_trained_model(run)
    expected = predict_logits(model.net, test.images[:5], model.datamodule.normalize, torch.device("cpu"))
    expected = expected.softmax(-1)
    for row, p in zip(rows, expected, strict=True):
        top = p.topk(5)
        assert [row[f"class_{k}"] for k in range(1, 6)] == [str(c) for c in top.indices.tolist()]
        assert [float(row[f"prob_{k}"]) for k in range(1, 6)] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_predict_resizes_and_converts_any_image(run: Path, tmp_path: Path, capsys) -> None:
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(photo)
    predict([f"ckpt_path={run}", f"image={photo}", "top_k=3"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"{photo}: ") and len(line.split(": ", 1)[1].split(", ")) == 3


def test_a_model_without_convolutions_skips_the_conv_pictures(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "mlp"
    train(tiny_data, run_dir, "model=mlp", "evaluate=true")
    metrics = json.loads((run_dir / "eval" / "eval_metrics.json").read_text())
    for name in ("filters.png", "feature_maps.png", "class_evidence.png"):
        assert not (run_dir / "eval" / name).exists() and "no convolution" in metrics["skipped"][name]
    assert (run_dir / "eval" / "confusion_matrix.png").is_file() and (
        run_dir / "eval" / "curves.png"
    ).is_file()


def expect_user_error(entry, args: list[str], capsys, *fragments: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        entry(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err[0]
    return err[0]


def test_missing_and_corrupt_checkpoints_are_one_line_errors(run: Path, tmp_path: Path, capsys) -> None:
    expect_user_error(evaluate, [f"ckpt_path={tmp_path / 'nope.ckpt'}"], capsys, "checkpoint not found")
    expect_user_error(evaluate, [], capsys, "ckpt_path=")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint")
    expect_user_error(
        evaluate, [f"ckpt_path={garbage}"], capsys, "is corrupt or truncated", "another checkpoint"
    )
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((run / read_run_record(run)["best_checkpoint"]).read_bytes()[:5000])
    expect_user_error(
        predict, [f"ckpt_path={truncated}", f"image={run / 'eval' / 'errors.png'}"], capsys, "corrupt"
    )
    assert not (tmp_path / "eval").exists()


def test_checkpoint_from_another_dataset_is_refused(run: Path, capsys) -> None:
    before = sorted(p.name for p in run.iterdir())
    expect_user_error(evaluate, [f"ckpt_path={run}", "data=cifar10"], capsys, "trained on data=mnist")
    assert sorted(p.name for p in run.iterdir()) == before


def test_existing_output_is_not_overwritten(run: Path, tmp_path: Path, capsys) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    expect_user_error(evaluate, [f"ckpt_path={run}", f"output_dir={taken}"], capsys, "overwrite=true")
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    output = tmp_path / "preds.csv"
    output.write_text("old")
    args = [f"ckpt_path={run}", f"image={run / 'eval' / 'errors.png'}", f"output={output}"]
    expect_user_error(predict, args, capsys, "already exists")
    assert output.read_text() == "old"


def test_bad_images_are_one_line_errors(run: Path, tmp_path: Path, capsys) -> None:
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    expect_user_error(predict, [f"ckpt_path={run}", f"image={not_image}"], capsys, "cannot read", "notes.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here")
    expect_user_error(predict, [f"ckpt_path={run}", f"image={empty}"], capsys, "holds no image files")
    expect_user_error(
        predict, [f"ckpt_path={run}", f"image={tmp_path / 'missing.png'}"], capsys, "does not exist"
    )


@pytest.mark.slow
def test_cli_errors_cleanly_and_leaves_the_working_directory_alone(tmp_path: Path) -> None:
    result = run_cli(["-m", "evaluate", f"ckpt_path={tmp_path / 'missing.ckpt'}"], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: checkpoint not found")
    assert list(tmp_path.iterdir()) == []  # no Hydra output folder or log file


def test_the_advice_of_a_data_error_works_for_evaluate(run: Path, tmp_path: Path, capsys) -> None:
    """Every key=value an evaluate error advises is a setting python -m evaluate takes."""
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF

    moved = tmp_path / "moved"
    message = expect_user_error(
        evaluate, [f"ckpt_path={run}", f"data.root={moved}"], capsys, "MNIST not found"
    )
    advised = re.findall(r"\b([a-z_]+(?:\.[a-z_]+)+)=", message)
    assert {"data.root", "data.download"} <= set(advised)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        config = compose(
            "evaluate", [f"{key}=true" if key.endswith("download") else f"{key}=x" for key in set(advised)]
        )
    assert config.data.download is True


def test_a_checkpoint_is_evaluated_in_the_precision_it_was_tested_in(run: Path, tiny_data: Path) -> None:
    # a bf16 run's recorded test accuracy comes from bf16 logits; fp32 ones can flip a few predictions
    cpu = torch.device("cpu")
    assert trained_precision({"precision": "auto"}, cpu) == "32-true"
    assert trained_precision({"precision": "bf16-mixed"}, cpu) == "bf16-mixed"
    assert trained_precision({}, cpu) == "32-true"
    model = load_trained_model(run)
    test = readers.read_mnist(tiny_data, train=False)
    images, normalize = test.images[:8], model.datamodule.normalize
    bf16 = predict_logits(model.net, images, normalize, cpu, precision="bf16-mixed")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model.net(normalize(images)).float()
    assert torch.equal(bf16, expected)
    assert not torch.equal(bf16, predict_logits(model.net, images, normalize, cpu))


@pytest.mark.parametrize(
    ("record", "files", "chosen"),
    [
        # preempted, then extended and failed: the record names none, the checkpoints are there
        ({"status": "failed"}, ["epoch_001.ckpt", "last.ckpt"], "epoch_001"),
        (None, ["last.ckpt"], "last"),  # killed in its first epoch after a step checkpoint: no record
        ({"status": "failed", "best_checkpoint": "checkpoints/epoch_009.ckpt"}, ["last.ckpt"], "last"),
    ],
)
def test_a_run_directory_stands_for_the_checkpoint_on_disk_where_its_record_names_none(
    tmp_path, caplog, record, files, chosen
) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "checkpoints").mkdir()
    for name in files:
        (tmp_path / "checkpoints" / name).write_bytes(b"")
    if record is not None:
        (tmp_path / "metrics.json").write_text(json.dumps(record))
    with caplog.at_level("INFO"):
        assert resolve_checkpoint_path(tmp_path) == tmp_path / "checkpoints" / f"{chosen}.ckpt"
    assert f"names no best checkpoint; using checkpoints/{chosen}.ckpt" in caplog.text


def test_a_run_directory_without_checkpoints_says_so(tmp_path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "failed"}))
    with pytest.raises(CheckpointError, match="saved no checkpoint"):
        resolve_checkpoint_path(tmp_path)
