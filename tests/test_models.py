from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from cnnlab.models.mlp import MLP
from cnnlab.models.smallcnn import SmallCNN
from cnnlab.models.smallvgg import SmallVGG
from tests.conftest import CONF

MODELS = ["smallcnn", "smallvgg", "mlp"]
SHAPES = {"cifar10": (3, 32, 32), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28)}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_smallcnn_has_exactly_288746_parameters_on_cifar10() -> None:
    assert count(SmallCNN(in_channels=3, num_classes=10)) == 288_746


def test_smallvgg_parameters_match_the_reference_per_stage() -> None:
    model = SmallVGG(in_channels=3, num_classes=10)
    assert [count(stage) for stage in model.stages] == [38_848, 221_696, 885_760]
    assert count(model.head) == 2_570
    assert count(model) == 1_148_874


def test_mlp_has_about_1_6_million_parameters_on_cifar10() -> None:
    assert 1_550_000 < count(MLP(in_channels=3, image_size=32, num_classes=10)) < 1_700_000


@pytest.mark.parametrize("model_class", [SmallCNN, SmallVGG])
def test_batch_norm_false_removes_bn_and_restores_conv_bias(model_class) -> None:
    with_bn = model_class(in_channels=3, num_classes=10)
    without = model_class(in_channels=3, num_classes=10, batch_norm=False)
    assert any(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())
    convs = [m for m in without.modules() if isinstance(m, nn.Conv2d)]
    assert all(conv.bias is not None for conv in convs)
    assert all(m.bias is None for m in with_bn.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("dataset", list(SHAPES))
@pytest.mark.parametrize("model", MODELS)
def test_every_model_takes_its_shape_from_every_dataset(model: str, dataset: str) -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", [f"model={model}", f"data={dataset}"])
    net = instantiate(cfg.model)
    logits = net(torch.randn(4, *SHAPES[dataset]))
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_dropout_goes_in_the_head() -> None:
    model = SmallCNN(in_channels=3, num_classes=10, dropout=0.3)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in model.head)
