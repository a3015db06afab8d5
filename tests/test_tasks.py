"""Detection and segmentation end to end: the presets through `python -m train` on tiny canvases, then
`python -m evaluate` and `python -m predict` on the result, and the one-line errors of bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.data.canvas import CanvasDataModule
from cnnlab.results.table import results_table
from tests.conftest import TINY, run_entry

pytestmark = pytest.mark.slow

# tiny canvases; the tiny MNIST has 200 training images, 40 of them held out
CANVAS = ["data.train_canvases=64", "data.val_canvases=16", "data.test_canvases=16", "data.batch_size=16"]


def entry(module: str, args: list[str]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        run_entry(module, args, patch)


def train(tiny_data: Path, run_dir: Path, *overrides: str) -> dict:
    entry("train", [f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", *TINY, *overrides])
    return json.loads((run_dir / "metrics.json").read_text())


def expect_user_error(module: str, args: list[str], capsys, *fragments: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        entry(module, args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err[0]
    return err[0]


def canvas_files(tiny_data: Path, folder: Path) -> list[Path]:
    """Three test canvases as PNG files, one enlarged to 96 x 80 (boxes come back in its pixels)."""
    module = CanvasDataModule(
        "mnist_canvas",
        "mnist",
        str(tiny_data),
        1,
        64,
        10,
        [0.06],
        [0.22],
        [str(i) for i in range(10)],
        train_canvases=1,
        test_canvases=3,
    )
    module.setup("test")
    folder.mkdir()
    files = []
    for index, image in enumerate(module.test_set.canvases.images):
        picture = Image.fromarray(image[0].numpy())
        if index == 0:
            picture = picture.resize((96, 80))
        files.append(folder / f"canvas{index}.png")
        picture.save(files[-1])
    return files


def test_detection_preset_trains_records_evaluates_and_predicts(
    tiny_data: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "detect"
    # score_threshold=0: a detector this young scores below the default threshold, and predict needs boxes
    record = train(
        tiny_data,
        run,
        "experiment=detect_digits",
        *CANVAS,
        "trainer.max_epochs=2",
        "logger=default",
        "model.score_threshold=0",
    )
    assert record["task"] == "detect" and record["dataset"] == "mnist_canvas"
    assert 0 <= record["test_map"] <= record["test_map_50"] <= 1
    assert record["best_val_map_50"] is not None and record["test_acc"] is None
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "monitor: val/map_50" in config  # the checkpoint is chosen on the task's metric
    assert "mAP@0.5" in capsys.readouterr().out

    entry("evaluate", [f"ckpt_path={run}"])
    out = run / "eval"
    for name in ("detections.png", "pr_curves.png", "worst.png", "per_class_ap.csv", "eval_metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "eval_metrics.json").read_text())
    assert metrics["map_50"] == pytest.approx(record["test_map_50"], abs=1e-6)  # the same test canvases
    assert any(p.name.startswith("events") for p in (run / "tensorboard").rglob("*"))

    files = canvas_files(tiny_data, tmp_path / "images")
    boxes_csv, pictures = tmp_path / "boxes.csv", tmp_path / "annotated"
    entry(
        "predict",
        [
            f"ckpt_path={run}",
            f"image={tmp_path / 'images'}",
            f"output={boxes_csv}",
            f"output_dir={pictures}",
            "min_score=0",
        ],
    )
    rows = list(csv.DictReader(boxes_csv.open()))
    assert rows and list(rows[0]) == ["file", "class", "score", "x1", "y1", "x2", "y2"]
    enlarged = [r for r in rows if r["file"].endswith("canvas0.png")]
    assert (
        enlarged
        and max(float(r["x2"]) for r in enlarged) <= 96
        and max(float(r["y2"]) for r in enlarged) <= 80
    )
    assert all(r["class"] in [str(i) for i in range(10)] for r in rows)
    assert sorted(p.name for p in pictures.iterdir()) == [f.name for f in files]

    # a detection checkpoint where only a classifier will do
    expect_user_error(
        "train",
        [
            f"hydra.run.dir={tmp_path / 'bad'}",
            f"data.root={tiny_data}",
            *TINY,
            "experiment=segment_digits",
            *CANVAS,
            f"model.backbone_ckpt={run}",
        ],
        capsys,
        "is a detect checkpoint",
        "classify",
    )


def test_segmentation_preset_from_a_trained_classifier(tiny_data: Path, tmp_path: Path, capsys) -> None:
    classifier = tmp_path / "classifier"
    assert train(tiny_data, classifier, "data=mnist", "model=smallcnn")["task"] == "classify"
    run = tmp_path / "segment"
    record = train(
        tiny_data,
        run,
        "experiment=segment_digits",
        *CANVAS,
        f"model.backbone_ckpt={classifier}",
        "logger=default",
        "trainer.max_epochs=2",  # one-cycle needs a few steps per phase
    )
    assert record["task"] == "segment"
    assert 0 <= record["test_miou"] <= 1 and 0 <= record["test_pixel_acc"] <= 1
    assert set(record["per_class_test"]) >= {"iou/background", "iou/7"}
    assert "monitor: val/miou" in (run / ".hydra" / "config.yaml").read_text()

    entry("evaluate", [f"ckpt_path={run}"])
    out = run / "eval"
    assert (out / "segmentation.png").is_file()
    rows = list(csv.DictReader((out / "per_class_iou.csv").open()))
    assert [r["class"] for r in rows] == ["background", *[str(i) for i in range(10)]]
    metrics = json.loads((out / "eval_metrics.json").read_text())
    assert metrics["miou"] == pytest.approx(record["test_miou"], abs=1e-5)

    canvas_files(tiny_data, tmp_path / "images")
    capsys.readouterr()
    entry(
        "predict",
        [
            f"ckpt_path={run}",
            f"image={tmp_path / 'images' / 'canvas0.png'}",
            f"output_dir={tmp_path / 'annotated'}",
        ],
    )
    line = capsys.readouterr().out.strip().splitlines()[0]
    counts = [int(part.rsplit(" ", 1)[1]) for part in line.split(": ", 1)[1].split(", ")]
    assert sum(counts) == 96 * 80  # every pixel of the enlarged image, in its own size
    assert (tmp_path / "annotated" / "canvas0.png").is_file()


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (
            ["model=detector", "data=cifar10"],
            ["needs boxes and masks", "data=mnist_canvas or data=fashion_canvas"],
        ),
        (["model=unet", "data=mnist"], ["needs boxes and masks"]),
        (["model=smallcnn", "data=mnist_canvas"], ["classifies whole images"]),
        (["experiment=detect_digits", "data.max_objects=0"], ["data.max_objects=0 is invalid"]),
        (["experiment=detect_digits", "data.canvas_size=24"], ["data.canvas_size=24 is smaller"]),
    ],
)
def test_bad_task_input_is_one_line(tiny_data: Path, tmp_path: Path, capsys, overrides, fragments) -> None:
    args = [f"hydra.run.dir={tmp_path / 'run'}", f"data.root={tiny_data}", *TINY, *overrides]
    expect_user_error("train", args, capsys, *fragments)


def test_results_table_shows_the_task_columns(tmp_path: Path) -> None:
    records = {
        "det": {"model": "detector", "task": "detect", "test_map": 0.61, "test_map_50": 0.93},
        "seg": {"model": "unet", "task": "segment", "test_miou": 0.84},
        "cls": {"model": "smallcnn", "task": "classify", "test_acc": 0.99},
    }
    for name, fields in records.items():
        (tmp_path / name).mkdir()
        record = {"status": "completed", "dataset": "mnist_canvas", "seed": 0, "overrides": [], **fields}
        (tmp_path / name / "metrics.json").write_text(json.dumps(record))
    text, _ = results_table([tmp_path])
    header = text.splitlines()[0]
    assert "test mAP" in header and "test mAP@0.5" in header and "test mIoU" in header
    detector_row = next(line for line in text.splitlines() if "| detector |" in line)
    assert "0.9300" in detector_row and "0.6100" in detector_row


def readme_commands(fragment: str) -> list[list[str]]:
    """The overrides of each README `python -m train` command (continued lines joined) with ``fragment``."""
    text = (Path(__file__).parents[1] / "README.md").read_text().replace("\\\n", " ")
    lines = [line.split("#")[0].split() for line in text.splitlines() if line.startswith("python -m train ")]
    return [line[3:] for line in lines if fragment in line]


def test_the_readme_gpu_sized_presets_compose_and_build() -> None:
    import torch
    from hydra import compose, initialize_config_dir

    from cnnlab.models.build import instantiate_model
    from tests.conftest import CONF

    commands = readme_commands("trainer=gpu")
    assert {c[0] for c in commands} == {"experiment=detect_digits", "experiment=segment_digits"}
    for overrides in commands:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("train", overrides)
        assert cfg.model.backbone == "resnet18" and cfg.data.train_canvases == 60000
        net = instantiate_model(cfg)
        with torch.no_grad():
            out = net(torch.zeros(2, cfg.data.channels, cfg.data.canvas_size, cfg.data.canvas_size))
        assert out.shape[0] == 2
