"""The HOG + linear SVM baseline on real MNIST under CNNLAB_DATA (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_real_data import DATA_ROOT, needs

pytestmark = pytest.mark.real_data


@needs("mnist")
def test_real_mnist_hog_svm_beats_90_percent(train_run, tmp_path: Path) -> None:
    # 5,000 training images (the other 55,000 validate); features of every image are extracted afresh
    record = train_run(
        "model=hog_svm",
        "data=mnist",
        f"data.root={DATA_ROOT}",
        "data.val_size=55000",
        f"paths.cache_dir={tmp_path / 'cache'}",
    )
    assert record["train_images"] == 5000 and record["test_images"] == 10_000
    # HOG, then the 8-bin grey histogram
    assert not record["features_cached"] and record["feature_dim"] == 144 + 8
    assert record["test_acc"] > 0.90 and record["best_val_acc"] > 0.90
