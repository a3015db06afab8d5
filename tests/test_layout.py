"""The layout's promises: every config names code that exists, callbacks sit in modules named like their
config, and checkpoints written before a module moved still load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import get_object

from cnnlab.analysis.checkpoints import load_trained_model
from tests.conftest import CONF, TINY, run_entry

# A one-epoch MLP (hidden=[16]) on the tiny MNIST, saved by `python -m train` before the package was
# reorganised into callbacks/, runs/ and training/ (its config names cnnlab.determinism.EpochSeed, ...).
OLD_LAYOUT_CHECKPOINT = Path(__file__).parent / "fixtures" / "mlp_mnist_layout_v1.ckpt"


def _targets(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [str(node["_target_"])] if "_target_" in node else []
        return found + [t for value in node.values() for t in _targets(value)]
    if isinstance(node, list):
        return [t for item in node for t in _targets(item)]
    return []


def _config_targets() -> list[tuple[str, str]]:
    return [
        (str(path.relative_to(CONF)), target)
        for path in sorted(CONF.rglob("*.yaml"))
        for target in _targets(yaml.safe_load(path.read_text()))
        if target.startswith("cnnlab.")
    ]


def test_the_configs_name_project_code() -> None:
    assert len(_config_targets()) > 20  # the walk found the configs


@pytest.mark.parametrize(("config", "target"), _config_targets())
def test_every_project_target_resolves(config: str, target: str) -> None:
    assert callable(get_object(target)), f"{config}: {target} is not a class or function"


@pytest.mark.parametrize("path", sorted((CONF / "callbacks").glob("*.yaml")), ids=lambda p: p.stem)
def test_project_callbacks_live_in_a_module_named_like_their_config(path: Path) -> None:
    # or like the config of the callback it configures again (step_checkpoint: a second ModelCheckpoint)
    configs = {p.stem for p in (CONF / "callbacks").glob("*.yaml")}
    for target in _targets(yaml.safe_load(path.read_text())):
        if target.startswith("cnnlab."):
            module = target.removeprefix("cnnlab.callbacks.").split(".")[0]
            assert target.startswith("cnnlab.callbacks.") and module in configs, f"{path.name} names {target}"


def test_checkpoint_of_the_previous_layout_still_names_the_old_modules() -> None:
    config = torch.load(OLD_LAYOUT_CHECKPOINT, weights_only=True)["cnnlab_config"]
    assert config["callbacks"]["epoch_seed"]["_target_"] == "cnnlab.determinism.EpochSeed"


def test_checkpoint_of_the_previous_layout_is_evaluated(tiny_data: Path) -> None:
    trained = load_trained_model(OLD_LAYOUT_CHECKPOINT, data_root=tiny_data)
    images = torch.zeros(2, *trained.datamodule.shape)
    assert trained.net(images).shape == (2, 10)


def test_checkpoint_of_the_previous_layout_resumes_training(
    tiny_data: Path, tmp_path: Path, monkeypatch
) -> None:
    checkpoint = tmp_path / "old.ckpt"
    shutil.copy(OLD_LAYOUT_CHECKPOINT, checkpoint)
    run_dir = tmp_path / "continued"
    args = [f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", *TINY, "data=mnist", "model=mlp"]
    args += ["model.hidden=[16]", "trainer.max_epochs=2", f"ckpt_path={checkpoint}"]
    run_entry("train", args, monkeypatch)
    record = yaml.safe_load((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed"
    assert record["epochs"] == 2
