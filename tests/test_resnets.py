"""ResNet-18/34 (CIFAR variants) and the ImageNet transfer ResNet-18."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from cnnlab.errors import DataError
from cnnlab.models.resnet import ResNet
from cnnlab.models.resnet18_transfer import TransferResNet18
from cnnlab.training.module import ClassifierModule

NEW_MODELS = {
    # narrow widths keep the entry-point runs to seconds; the depth and the code path are the real ones
    "resnet18": ["model.widths=[8,16,32,64]"],
    "resnet34": ["model.widths=[8,16,32,64]"],
    "resnet18_transfer": ["model.weights=null", "model.input_size=32"],
}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("blocks", "millions"), [((2, 2, 2, 2), 11.2), ((3, 4, 6, 3), 21.3)])
def test_cifar_resnet_parameter_counts(blocks: tuple[int, ...], millions: float) -> None:
    model = ResNet(in_channels=3, num_classes=10, blocks=blocks)
    assert count(model) == pytest.approx(millions * 1e6, rel=0.01)
    residual_blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(residual_blocks) == sum(blocks)
    # CIFAR stem: one 3x3 conv at full resolution, no max-pool
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.stages[0][0].kernel_size == (3, 3) and model.stages[0][0].stride == (1, 1)


def test_resnet_stages_end_with_the_last_residual_stage_at_a_quarter_of_the_resolution() -> None:
    model = ResNet(in_channels=1, num_classes=10, widths=(8, 16, 32, 64)).eval()
    images = torch.randn(2, 1, 28, 28)
    features = model.stages(images)
    assert features.shape == (2, 64, 4, 4)
    assert isinstance(model.stages[-1][-1], BasicBlock)
    assert torch.equal(model.head(features), model(images))


def test_resnet_dropout_goes_in_the_head() -> None:
    model = ResNet(in_channels=3, num_classes=10, dropout=0.2)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.2 for m in model.head)


def transfer(**kwargs) -> TransferResNet18:
    return TransferResNet18(
        3, 10, mean=[0.5] * 3, std=[0.25] * 3, **{"weights": None, "input_size": 32, **kwargs}
    )


def test_frozen_backbone_has_no_trainable_parameters_and_does_not_change_in_a_step() -> None:
    net = transfer(freeze_backbone=True)
    assert not any(p.requires_grad for p in net.stages.parameters())
    assert all(p.requires_grad for p in net.head.parameters())
    module = ClassifierModule(
        net, optimizer=partial(torch.optim.SGD, lr=0.5, momentum=0.9, weight_decay=5e-4), num_classes=10
    )
    optimizer = module.configure_optimizers()
    backbone_before = {k: v.clone() for k, v in net.stages.state_dict().items()}
    head_before = {k: v.clone() for k, v in net.head.state_dict().items()}
    module.train()
    loss = module.criterion(module(torch.randn(8, 3, 32, 32)), torch.arange(8))
    loss.backward()
    optimizer.step()
    # parameters and BatchNorm statistics alike: a frozen backbone keeps ImageNet's running stats
    assert all(torch.equal(backbone_before[k], v) for k, v in net.stages.state_dict().items())
    assert any(not torch.equal(head_before[k], v) for k, v in net.head.state_dict().items())
    assert not net.stages.training and net.head.training


def test_fine_tuning_trains_the_backbone_at_a_lower_lr() -> None:
    net = transfer(freeze_backbone=False, backbone_lr_scale=0.1)
    module = ClassifierModule(net, optimizer=partial(torch.optim.SGD, lr=0.2), num_classes=10)
    optimizer = module.configure_optimizers()
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert [lr_of[id(p)] for p in net.stages.parameters()] == pytest.approx(
        [0.02] * len(list(net.stages.parameters()))
    )
    assert {lr_of[id(p)] for p in net.head.parameters()} == {0.2}
    assert len(lr_of) == len(list(net.parameters()))  # every parameter, once
    net.train()
    assert net.stages.training


def test_transfer_resizes_and_restandardises_inside_the_model() -> None:
    net = TransferResNet18(1, 10, mean=[0.1307], std=[0.3081], weights=None, input_size=40)
    seen = {}
    net.stages.register_forward_pre_hook(lambda module, args: seen.setdefault("input", args[0]))
    grey = torch.full((2, 1, 28, 28), (1.0 - 0.1307) / 0.3081)  # white after the data's normalisation
    net.eval()(grey)
    imagenet_white = (1.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert seen["input"].shape == (2, 3, 40, 40)
    assert torch.allclose(seen["input"][0, :, 20, 20], imagenet_white, atol=1e-4)


def test_transfer_loads_the_weights_from_the_torch_hub_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet18().state_dict()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference, tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    net = TransferResNet18(3, 10, mean=[0.5] * 3, std=[0.25] * 3)
    assert torch.equal(net.stages[1][0].conv1.weight, reference["layer1.0.conv1.weight"])
    assert torch.equal(net.stages[0][0].weight, reference["conv1.weight"])


def test_missing_weights_name_the_hub_cache_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(DataError) as error:
        TransferResNet18(3, 10, mean=[0.5] * 3, std=[0.25] * 3, weights="IMAGENET1K_V1")
    message = str(error.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "model.weights=null" in message and "\n" not in message


@pytest.mark.parametrize("dataset", ["cifar10", "mnist"])
@pytest.mark.parametrize("model", list(NEW_MODELS))
def test_new_models_train_through_the_entry_point(train_run, model: str, dataset: str) -> None:
    record = train_run(f"model={model}", f"data={dataset}", *NEW_MODELS[model])
    assert record["model"] == model and record["dataset"] == dataset and record["status"] == "completed"
    assert 0.0 <= record["test_acc"] <= 1.0
    if model == "resnet18_transfer":  # frozen backbone: only the new head trains
        assert record["trainable_params"] == 512 * 10 + 10 < record["params"]
    else:
        assert record["trainable_params"] == record["params"]
