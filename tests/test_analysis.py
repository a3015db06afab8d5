"""Units of the analysis package: layer choice, fit diagnosis, figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from cnnlab.analysis.checkpoints import load_trained_model
from cnnlab.analysis.curves import History, diagnose_fit, read_history
from cnnlab.analysis.figures import plot_confusion_matrix, plot_filters
from cnnlab.analysis.gradcam import gradcam_maps
from cnnlab.analysis.layers import first_conv, gradcam_layer, stages
from cnnlab.models.build import instantiate_model
from cnnlab.models.mlp import MLP
from cnnlab.models.smallcnn import SmallCNN
from cnnlab.models.smallvgg import SmallVGG
from tests.conftest import CONF


class ResidualBlock(nn.Module):
    """A block whose 1x1 shortcut conv is registered after its main convs."""

    def __init__(self, channels: int, out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, out, 3, padding=1)
        self.conv2 = nn.Conv2d(out, out, 3, padding=1)
        self.shortcut = nn.Conv2d(channels, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.Sequential(
            nn.Sequential(ResidualBlock(3, 8), ResidualBlock(8, 8)), nn.Sequential(ResidualBlock(8, 16))
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(x))


def test_gradcam_layer_is_the_last_conv_block_before_pooling() -> None:
    vgg = SmallVGG(3, 10)
    assert gradcam_layer(vgg) is vgg.stages[-1][1]  # the second conv block, not the max-pool after it
    cnn = SmallCNN(1, 10)
    assert gradcam_layer(cnn) is cnn.stages[-1][-1]
    resnet = TinyResNet()
    assert gradcam_layer(resnet) is resnet.stages[-1][0]  # the whole residual block, not its shortcut
    assert first_conv(resnet) is resnet.stages[0][0].conv1
    assert [name for name, _ in stages(cnn)] == ["stage 1", "stage 2", "stage 3"]
    mlp = MLP(1, 28, 10)
    assert gradcam_layer(mlp) is None and first_conv(mlp) is None


def test_gradcam_maps_cover_the_image_and_depend_on_the_class() -> None:
    torch.manual_seed(0)
    net = SmallCNN(3, 10).eval()
    images = torch.randn(2, 3, 32, 32)
    maps_a = gradcam_maps(net, gradcam_layer(net), images, torch.tensor([0, 0]))
    maps_b = gradcam_maps(net, gradcam_layer(net), images, torch.tensor([1, 1]))
    assert maps_a.shape == (2, 32, 32) and (maps_a >= 0).all()
    assert not torch.allclose(maps_a, maps_b)


def history(train_acc: list[float], val_acc: list[float], val_loss: list[float] | None = None) -> History:
    val_loss = val_loss or [1.0 - v for v in val_acc]
    return History(
        train_loss=[1.0 - a for a in train_acc], train_acc=train_acc, val_loss=val_loss, val_acc=val_acc
    )


@pytest.mark.parametrize(
    ("train_acc", "val_acc", "val_loss", "verdict"),
    [
        ([0.90], [0.97], None, "underfitting"),  # one epoch
        ([0.5, 0.6, 0.7, 0.75], [0.5, 0.6, 0.68, 0.74], None, "underfitting"),  # still rising
        ([0.8, 0.9, 0.95, 0.96, 0.97], [0.8, 0.88, 0.92, 0.925, 0.927], None, "good fit"),  # levelled off
        (
            [0.7, 0.85, 0.95, 0.99, 1.0],
            [0.7, 0.82, 0.85, 0.83, 0.82],
            [0.6, 0.5, 0.5, 0.6, 0.7],
            "overfitting",
        ),
        ([0.9, 0.99, 1.0], [0.7, 0.8, 0.8], None, "overfitting"),  # gap of 0.2
    ],
)
def test_fit_diagnosis(train_acc, val_acc, val_loss, verdict: str) -> None:
    diagnosis = diagnose_fit(history(train_acc, val_acc, val_loss))
    assert diagnosis.verdict == verdict
    assert diagnosis.line.startswith(f"fit: {verdict}") and f"{val_acc[-1]:.3f}" in diagnosis.line


def test_no_validation_is_an_unknown_fit() -> None:
    assert diagnose_fit(history([0.5, 0.6], [])).verdict == "unknown"


def test_read_history_takes_lightning_csv_rows(tmp_path: Path) -> None:
    csv_file = tmp_path / "metrics.csv"
    csv_file.write_text(
        "epoch,lr-SGD,step,train/acc,train/loss,val/acc,val/loss\n"
        ",0.1,0,,,,\n0,,4,,,0.5,1.2\n0,,4,0.4,1.5,,\n,0.05,5,,,,\n1,,9,,,0.6,1.0\n1,,9,0.7,0.9,,\n"
    )
    curves = read_history(csv_file)
    assert curves is not None and curves.epochs == 2
    assert curves.train_acc == [0.4, 0.7] and curves.val_loss == [1.2, 1.0]
    assert curves.learning_rates["SGD"] == ([0.0, 1.0], [0.1, 0.05])
    assert read_history(tmp_path / "missing.csv") is None


def test_confusion_matrix_figure_is_a_readable_png(tmp_path: Path) -> None:
    matrix = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 4]])
    path = plot_confusion_matrix(matrix, ["cat", "dog", "car"], tmp_path / "cm.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 2 * image.height > 400


def test_rgb_filters_are_drawn_in_colour(tmp_path: Path) -> None:
    weights = torch.zeros(64, 3, 3, 3)
    weights[:, 0] = 1.0  # every kernel pure red after min-max scaling
    with Image.open(plot_filters(weights, tmp_path / "f.png", "red")) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    red = (pixels[:, 0] > 200) & (pixels[:, 1] < 50) & (pixels[:, 2] < 50)
    assert red.mean() > 0.2


def test_pretrained_checkpoints_load_without_the_pretrained_file(
    tmp_path: Path, monkeypatch, tiny_data
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))  # no ImageNet weights, no network
    overrides = ["model=resnet18_transfer", "data=cifar10", f"data.root={tiny_data}", "model.input_size=32"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        config = compose("train", overrides)
        trained = instantiate_model(compose("train", [*overrides, "model.weights=null"]))
    resolved = {part: OmegaConf.to_container(config[part], resolve=True) for part in ("model", "data")}
    assert resolved["model"]["weights"] == "IMAGENET1K_V1"
    state = {f"net.{key}": value for key, value in trained.state_dict().items()}
    torch.save({"state_dict": state, "cnnlab_config": resolved}, tmp_path / "transfer.ckpt")
    loaded = load_trained_model(tmp_path / "transfer.ckpt")
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[key], value), key
