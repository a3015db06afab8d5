from __future__ import annotations

import logging

import pytest
import torch
from omegaconf import OmegaConf

from cnnlab.models.mlp import MLP
from cnnlab.models.smallcnn import SmallCNN
from cnnlab.training import build, precision
from cnnlab.training.module import ClassifierModule


def test_auto_precision_is_fp32_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.resolve_precision(OmegaConf.create({"precision": "auto"})) == "32-true"
    assert precision.resolve_precision(OmegaConf.create({"precision": "16-mixed"})) == "16-mixed"


@pytest.mark.parametrize("amx", [True, False])
def test_auto_precision_points_to_bf16_on_an_amx_cpu(monkeypatch, caplog, amx: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    with caplog.at_level("INFO", logger=precision.__name__):
        precision.suggest_bf16_on_amx(OmegaConf.create({"precision": "auto"}))
        precision.suggest_bf16_on_amx(OmegaConf.create({"precision": "32-true"}))  # asked for: no advice
    assert caplog.text.count("trainer.precision=bf16-mixed trains convolutions") == int(amx)


def test_auto_precision_is_bf16_on_a_bf16_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.resolve_precision(OmegaConf.create({"precision": "auto"})) == "bf16-mixed"
    cpu = OmegaConf.create({"precision": "auto", "accelerator": "cpu"})
    assert precision.resolve_precision(cpu) == "32-true"


def test_compile_without_a_compiler_falls_back_with_a_message(monkeypatch, caplog) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    net = SmallCNN(3, 10)
    with caplog.at_level(logging.WARNING):
        build.compile_network(net)
    assert "needs a C++ compiler" in caplog.text and net._compiled_call_impl is None


@pytest.mark.parametrize(
    ("net", "setting", "nhwc"),
    [(SmallCNN(3, 10), True, True), (SmallCNN(3, 10), False, False), (MLP(3, 32, 10), True, False)],
    ids=["conv-net", "turned-off", "no-convs"],
)
def test_channels_last_applies_to_convolutional_nets_only(net, setting: bool, nhwc: bool) -> None:
    module = ClassifierModule(net, optimizer=torch.optim.SGD, num_classes=10)
    build.prepare_network(OmegaConf.create({"channels_last": setting}), net, module)
    assert module.channels_last is nhwc
    weights = [p for p in net.parameters() if p.dim() == 4]
    assert all(w.is_contiguous(memory_format=torch.channels_last) is nhwc for w in weights)
    logits = module(torch.randn(4, 3, 32, 32))  # NCHW in, as the loaders give it
    assert logits.shape == (4, 10)


@pytest.mark.parametrize("legacy", [True, False])
def test_the_former_model_option_channels_last_is_honoured(legacy: bool, caplog) -> None:
    """``+model.channels_last`` (and the configs of runs recorded before it moved) still decide."""
    net = SmallCNN(3, 10)
    module = ClassifierModule(net, optimizer=torch.optim.SGD, num_classes=10)
    cfg = OmegaConf.create({"channels_last": not legacy, "model": {"channels_last": legacy}})
    with caplog.at_level(logging.INFO):
        build.prepare_network(cfg, net, module)
    assert module.channels_last is legacy
    assert f"model.channels_last={legacy} is the run option channels_last now" in caplog.text


def test_default_channels_last_run_and_throughput_are_recorded(train_run, tmp_path) -> None:
    run_dir = tmp_path / "nhwc"
    record = train_run("model=smallcnn", "data=cifar10", run_dir=run_dir)
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").channels_last is True
    assert record["status"] == "completed" and record["precision"] == "32-true"
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/images_per_s" in header
