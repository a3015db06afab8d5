"""The HOG + linear SVM baseline through the real entry point, its parallel extractor and feature cache."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import joblib
import numpy as np
import pytest
from PIL import Image

from cnnlab.baselines import features
from cnnlab.baselines.cache import FeatureCache
from cnnlab.baselines.features import HogParams, color_histogram, descriptor_of, extract_hog, hog_of
from cnnlab.data import readers
from tests.conftest import CONF, TINY, run_entry
from tests.datasets import make_images

EVAL_FILES = [
    "classification_report.txt",
    "classification_report.json",
    "confusion_matrix.csv",
    "confused_pairs.csv",
]


@pytest.fixture
def hog_run(train_run, tmp_path: Path):
    """hog_svm through `python -m train`, with its feature cache in this test's folder."""

    def run(*overrides: str, run_dir: Path | None = None):
        return train_run(
            "model=hog_svm", f"paths.cache_dir={tmp_path / 'cache'}", *overrides, run_dir=run_dir
        )

    return run


@pytest.mark.parametrize("dataset", ["cifar10", "mnist", "fashion_mnist"])
def test_hog_svm_writes_the_same_record_and_reports_as_networks(
    hog_run, tmp_path: Path, dataset: str
) -> None:
    run_dir = tmp_path / "run"
    record = hog_run(f"data={dataset}", "evaluate=true", run_dir=run_dir)
    assert record["model"] == "hog_svm" and record["dataset"] == dataset and record["status"] == "completed"
    assert record["features"] == "hog+color_hist" and record["epochs"] is None
    # 28 px: 3x3 cells of 8 px -> 2x2 blocks; 32 px: 4x4 cells -> 3x3 blocks; 2x2 cells x 9 bins per block;
    # then the colour histogram: 8 bins per channel
    blocks, channels = (9, 3) if dataset == "cifar10" else (4, 1)
    assert record["feature_dim"] == blocks * 4 * 9 + channels * 8
    assert record["feature_params"]["transform_sqrt"] and not record["feature_params"]["grayscale"]
    assert record["params"] == 10 * record["feature_dim"] + 10  # one weight vector and bias per class
    assert (record["train_images"], record["val_images"], record["test_images"]) == (160, 40, 100)
    assert record["test_acc"] > 0.5 and 0 < record["best_val_acc"] <= 1  # chance is 0.1
    for name in [*EVAL_FILES, "confusion_matrix.png", "eval_metrics.json"]:
        assert (run_dir / "eval" / name).is_file()
    matrix = np.loadtxt(
        run_dir / "eval" / "confusion_matrix.csv", delimiter=",", skiprows=1, usecols=range(1, 11)
    )
    assert np.trace(matrix) / matrix.sum() == pytest.approx(record["test_acc"])
    # the saved classifier is the one that was scored
    classifier = joblib.load(run_dir / record["model_file"])
    assert classifier.named_steps["svm"].coef_.shape == (10, record["feature_dim"])
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_second_run_reads_the_cache_and_a_hog_parameter_invalidates_it(hog_run, monkeypatch) -> None:
    calls: list[HogParams] = []
    real_extract = features.extract_hog

    def counting_extract(images, params, **kwargs):
        calls.append(params)
        return real_extract(images, params, **kwargs)

    monkeypatch.setattr(features, "extract_hog", counting_extract)
    first = hog_run("data=mnist")
    assert len(calls) == 2 and not first["features_cached"]  # training files, test files

    second = hog_run("data=mnist", "model.C=0.1", "data.val_size=60", "seed=3")
    assert len(calls) == 2 and second["features_cached"]  # a new C, split and seed reuse the features
    assert second["feature_dim"] == first["feature_dim"] and second["train_images"] == 140

    third = hog_run("data=mnist", "model.orientations=6")
    assert len(calls) == 4 and not third["features_cached"] and calls[-1].orientations == 6
    assert third["feature_dim"] == 4 * 4 * 6 + 8

    # every feature option is in the key: the histogram and the power law invalidate it too
    fourth = hog_run("data=mnist", "model.color_hist_bins=0")
    assert len(calls) == 6 and not fourth["features_cached"] and fourth["feature_dim"] == 4 * 4 * 9
    assert fourth["features"] == "hog"
    fifth = hog_run("data=mnist", "model.color_hist_bins=0", "model.transform_sqrt=false")
    assert len(calls) == 8 and not fifth["features_cached"] and not calls[-1].transform_sqrt


def test_parallel_extraction_matches_a_per_image_loop_in_order() -> None:
    images, _ = make_images(23, (3, 32, 32), seed=5)
    params = HogParams()
    expected = np.stack([descriptor_of(image, params) for image in images])
    parallel = extract_hog(images, params, n_jobs=2, chunk_size=4)
    assert parallel.dtype == np.float32 and parallel.shape == (23, 324 + 3 * 8)
    np.testing.assert_allclose(parallel, expected, rtol=1e-6, atol=1e-7)
    grey = extract_hog(images[:3], HogParams(grayscale=True, color_hist_bins=0), n_jobs=1)
    assert grey.shape == (3, 324) and not np.allclose(grey, parallel[:3, :324])


def test_hog_options_change_the_descriptor_as_documented() -> None:
    image = make_images(1, (3, 32, 32), seed=2)[0][0]
    plain = HogParams(transform_sqrt=False, color_hist_bins=0)
    assert descriptor_of(image, plain).shape == (324,)
    np.testing.assert_array_equal(descriptor_of(image, plain), hog_of(image, plain))
    # the power law changes the gradients, not the layout
    compressed = HogParams(transform_sqrt=True, color_hist_bins=0)
    assert not np.allclose(hog_of(image, compressed), hog_of(image, plain))
    # the histogram follows the HOG: 4 bins x 3 channels
    with_hist = descriptor_of(image, HogParams(transform_sqrt=False, color_hist_bins=4))
    assert with_hist.shape == (324 + 12,)
    np.testing.assert_array_equal(with_hist[:324], hog_of(image, plain))


def test_color_histogram_counts_each_channel_in_equal_width_bins() -> None:
    image = np.zeros((3, 2, 2), dtype=np.uint8)
    image[0] = [[0, 63], [64, 255]]  # red: bins 0, 0, 1, 3 of 4
    image[1] = 128  # green: all in bin 2
    image[2] = [[255, 255], [255, 0]]  # blue: three in bin 3, one in bin 0
    histogram = color_histogram(image, 4)
    fractions = np.array([[0.5, 0.25, 0, 0.25], [0, 0, 1, 0], [0.25, 0, 0, 0.75]])
    np.testing.assert_allclose(histogram, np.sqrt(fractions).ravel())
    np.testing.assert_allclose(np.linalg.norm(histogram.reshape(3, 4), axis=1), 1.0)  # unit norm per channel
    assert color_histogram(image[:1], 256).shape == (256,)  # one channel (grey images), the finest bins


def test_cache_key_follows_the_image_content(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    images, _ = make_images(5, (1, 28, 28), seed=0)
    computed = []

    def compute():
        computed.append(1)
        return np.ones((5, 3), dtype=np.float32) * len(computed)

    settings = {"extractor": "hog", "orientations": 9}
    assert not cache.get_or_compute("x", images, settings, compute)[1]
    assert cache.get_or_compute("x", images.copy(), settings, compute)[1]
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1  # one pixel
    features, cached = cache.get_or_compute("x", changed, settings, compute)
    assert not cached and features[0, 0] == 2 and len(computed) == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.pixels_per_cell=20", "do not fit in 28x28"),
        ("model.C=0", "model.C=0"),
        ("model.block_norm=L3", "L2-Hys"),
        ("model.color_hist_bins=-1", "model.color_hist_bins=-1 is invalid"),
        ("model.color_hist_bins=300", "from 1 to 256"),
        ("model.transform_sqrt=maybe", "model.transform_sqrt='maybe' is invalid; use true or false"),
    ],
)
def test_bad_hog_settings_stop_with_one_line(
    tiny_data, tmp_path, monkeypatch, capsys, override, message
) -> None:
    args = [
        f"hydra.run.dir={tmp_path / 'run'}",
        f"data.root={tiny_data}",
        "data=mnist",
        "model=hog_svm",
        *TINY,
        override,
    ]
    with pytest.raises(SystemExit) as exit_info:
        run_entry("train", args, monkeypatch)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


MODELS = sorted(path.stem for path in (CONF / "model").glob("*.yaml"))
# no network here: the transfer model starts from random weights, at the data's size
MODEL_OVERRIDES = {"resnet18_transfer": ["model.weights=null", "model.input_size=32"]}
ONE_BATCH = [
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]


# the detector and the U-Net run on Fashion-MNIST's canvases, and report their own test figures
CANVASES = ["data=fashion_canvas", "data.train_canvases=32", "data.val_canvases=16", "data.test_canvases=16"]
TASK_FIGURES = {"detector": "test_map_50", "unet": "test_miou"}


@pytest.mark.parametrize("model", MODELS)
def test_every_model_runs_on_fashion_mnist(train_run, tmp_path: Path, model: str) -> None:
    overrides = [f"model={model}", "data=fashion_mnist", f"paths.cache_dir={tmp_path / 'cache'}", *ONE_BATCH]
    if model in TASK_FIGURES:
        record = train_run(*overrides, *CANVASES)
        assert (
            record["dataset"] == "fashion_canvas" and record["model"] == model and record["test_images"] == 16
        )
        assert 0 <= record[TASK_FIGURES[model]] <= 1 and record["params"] > 0
        return
    record = train_run(*overrides, *MODEL_OVERRIDES.get(model, []))
    assert (
        record["dataset"] == "fashion_mnist" and record["model"] == model and record["test_set_images"] == 100
    )
    # limit_test_batches=1 tests one batch of 32 (the SVM takes no batches: the whole test set)
    assert record["test_images"] == (100 if model == "hog_svm" else 32)
    assert 0 <= record["test_acc"] <= 1 and record["params"] > 0


def test_evaluate_and_predict_take_a_hog_svm_run(hog_run, tiny_data: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "hog"
    record = hog_run("data=mnist", run_dir=run_dir)
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:  # the run directory, as for a network's run
        run_entry("evaluate", [f"ckpt_path={run_dir}"], patch)
    assert "hog_svm on mnist (model.joblib): test acc" in capsys.readouterr().out
    metrics = json.loads((run_dir / "eval-1" / "eval_metrics.json").read_text())  # eval/ is training's
    assert metrics["accuracy"] == pytest.approx(record["test_acc"]) and metrics["images"] == 100
    assert (run_dir / "eval-1" / "confusion_matrix.png").is_file()

    test = readers.read_mnist(tiny_data, train=False)
    folder = tmp_path / "digits"
    folder.mkdir()
    for index in range(4):
        Image.fromarray(test.images[index, 0].numpy()).save(folder / f"test_{index}.png")
    output = tmp_path / "preds.csv"
    with pytest.MonkeyPatch.context() as patch:  # or the model.joblib itself
        run_entry(
            "predict", [f"ckpt_path={run_dir / 'model.joblib'}", f"image={folder}", f"output={output}"], patch
        )
    rows = list(csv.DictReader(output.open()))
    classifier = joblib.load(run_dir / "model.joblib")
    params = HogParams(
        **{k: v for k, v in record["feature_params"].items() if k in HogParams.__dataclass_fields__}
    )
    scores = classifier.decision_function(extract_hog(test.images[:4].numpy(), params, n_jobs=1))
    for row, expected in zip(rows, scores, strict=True):
        assert row["class_1"] == str(int(expected.argmax()))
        assert float(row["score_1"]) == pytest.approx(float(expected.max()), abs=1e-5)
    assert "test_0.png: " in capsys.readouterr().out
