from __future__ import annotations

import torch
from hydra import compose, initialize_config_dir

from cnnlab.models.airbench import AirbenchNet
from tests.conftest import CONF


def test_speedrun_preset_composes_the_airbench_recipe() -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", ["experiment=speedrun94"])
    assert cfg.model._target_.endswith("AirbenchNet") and cfg.data.loader == "tensor"
    assert cfg.data.batch_size == 1024 and cfg.data.val_size == 0 and cfg.tta == "flip_translate"
    assert cfg.channels_last and cfg.loss.label_smoothing == 0.2 and cfg.trainer.max_epochs == 10


def test_speedrun_preset_trains_a_few_steps_on_cpu(train_run) -> None:
    record = train_run(
        "experiment=speedrun94",
        "data.batch_size=32",
        "data.val_size=0",
        "+trainer.limit_train_batches=3",
        "trainer.max_epochs=1",
        "data=cifar10",
    )
    assert record["status"] == "completed" and record["model"] == "airbench94"
    assert record["best_val_acc"] is None and record["val_images"] == 0
    assert record["tta"] == "flip_translate" and 0 <= record["test_tta_acc"] <= 1


def test_whitening_layer_decorrelates_patches_and_is_frozen() -> None:
    net = AirbenchNet(in_channels=3, num_classes=10)
    images = torch.randn(256, 3, 8, 8) @ torch.randn(8, 8)  # correlated pixels
    net.initialize_from_data(images)
    half = net.whiten.out_channels // 2
    responses = torch.nn.functional.conv2d(images, net.whiten.weight[:half])
    covariance = torch.cov(responses.permute(1, 0, 2, 3).reshape(half, -1))
    torch.testing.assert_close(covariance, torch.eye(half), atol=0.05, rtol=0)
    assert not net.whiten.weight.requires_grad


def test_norm_shifts_get_the_bias_lr_scale() -> None:
    net = AirbenchNet(in_channels=3, num_classes=10)
    groups = net.param_groups()
    assert groups[1]["lr_scale"] == 64.0 and all(p.ndim == 1 for p in groups[1]["params"])
    listed = sum(len(g["params"]) for g in groups)
    assert listed == len(list(net.parameters()))
