"""The bad-input catalogue (README): each input stops with one line naming the problem and the fix,
a non-zero exit, and nothing already written lost. Rows tested elsewhere name their test in the README."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cnnlab.runs.record import read_run_record
from tests.conftest import REPO, TINY, run_cli, run_entry

FAST = ["model=mlp", "data=mnist", "evaluate=false"]


def last_error_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("model=smallCNN", "smallcnn"),
        ("model=resnet50", "resnet34"),
        ("optimizer=adamx", "adam"),
        ("scheduler=cosin", "cosine"),
        ("data=nope", None),
    ],
)
def test_unknown_option_names_the_closest_one_and_lists_the_options(
    typed: str, meant: str | None, tiny_data, monkeypatch, capsys
) -> None:
    group, option = typed.split("=")
    with pytest.raises(SystemExit) as exit_info:
        run_entry("train", [typed, f"data.root={tiny_data}"], monkeypatch)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: there is no {group} option {option};"), err
    if meant is None:
        assert "did you mean" not in err[0] and "choose one of: cifar10, fashion_canvas," in err[0]
    else:
        assert f"did you mean {meant}? ({group}={meant}); the options: " in err[0]
    assert "Config search path" not in err[0]


def test_an_unknown_option_in_a_sweep_is_one_line_too(tiny_data, tmp_path, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sweep = [f"hydra.sweep.dir={tmp_path / 'sweep'}", "model=smallCNN,mlp"]
        run_entry("train", ["--multirun", *sweep, f"data.root={tiny_data}", *TINY], monkeypatch)
    assert exit_info.value.code == 2
    assert "did you mean smallcnn? (model=smallcnn)" in last_error_line(capsys)


# the NaN loss is the point of this test: torchmetrics says it drops the NaN values it is given
@pytest.mark.filterwarnings("ignore:Encountered `nan` values in tensor")
def test_diverging_learning_rate_stops_with_the_last_good_checkpoint_kept(
    train_run, tmp_path, capsys
) -> None:
    run_dir = tmp_path / "diverged"
    # a sane first epoch, then the step schedule multiplies the LR by 1e8: the loss turns NaN
    schedule = ["optimizer=sgd", "scheduler=step", "scheduler.milestones=[0.5]", "scheduler.gamma=1e8"]
    with pytest.raises(SystemExit) as exit_info:
        train_run(*FAST, *schedule, "trainer.max_epochs=2", run_dir=run_dir)
    assert exit_info.value.code == 2
    message = last_error_line(capsys)
    assert message.startswith("error: the training loss became NaN or infinite at step")
    assert "lower optimizer.lr" in message and "last good checkpoint is" in message
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 0 and all(torch.isfinite(t).all() for t in last["state_dict"].values())
    record = read_run_record(run_dir)
    assert record["status"] == "failed" and record["error"] == message.removeprefix("error: ")


@pytest.fixture(scope="module")
def finished_checkpoint(tiny_data: Path, tmp_path_factory) -> Path:
    """The last.ckpt of a finished one-epoch MLP run on the tiny MNIST."""
    run_dir = tmp_path_factory.mktemp("ckpt") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_entry("train", [f"hydra.run.dir={run_dir}", f"data.root={tiny_data}", *TINY, *FAST], monkeypatch)
    return run_dir / "checkpoints" / "last.ckpt"


def test_truncated_checkpoint_is_reported(train_run, finished_checkpoint: Path, tmp_path, capsys) -> None:
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(finished_checkpoint.read_bytes()[:5000])
    with pytest.raises(SystemExit) as exit_info:
        train_run(*FAST, f"ckpt_path={truncated}")
    assert exit_info.value.code == 2
    message = last_error_line(capsys)
    assert str(truncated) in message and "is corrupt or truncated" in message and "ckpt_path" in message


def test_foreign_checkpoint_is_reported(train_run, tmp_path, capsys) -> None:
    weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), weights)
    with pytest.raises(SystemExit) as exit_info:
        train_run(*FAST, f"ckpt_path={weights}")
    assert exit_info.value.code == 2
    assert "is not a training checkpoint of python -m train" in last_error_line(capsys)


def test_checkpoint_of_another_model_is_reported(train_run, finished_checkpoint: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_run("model=smallcnn", "data=mnist", "evaluate=false", f"ckpt_path={finished_checkpoint}")
    assert exit_info.value.code == 2
    message = last_error_line(capsys)
    assert "was saved by another model (it holds MLP trained on mnist)" in message and "model=" in message


def test_missing_checkpoint_is_reported(train_run, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        train_run(*FAST, f"ckpt_path={tmp_path / 'nope.ckpt'}")
    assert "no such file" in last_error_line(capsys)


def test_resume_of_a_directory_without_a_run_is_reported(tmp_path, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_entry("train", [f"resume={tmp_path}"], monkeypatch)
    assert exit_info.value.code == 2
    assert "overrides.yaml not found; pass a run directory written by" in last_error_line(capsys)


def test_a_setting_that_is_not_a_number_is_one_line(train_run, tmp_path, capsys) -> None:
    run_dir = tmp_path / "lr"
    with pytest.raises(SystemExit) as exit_info:
        train_run(*FAST, "optimizer.lr=abc", run_dir=run_dir)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: optimizer.lr='abc' is not a number"), err
    assert "optimizer.lr=0.05" in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize(
    "asked",
    # trainer=gpu as a user types it (the tests' own trainer.accelerator=cpu undone), and the two names
    [("trainer=gpu", "trainer.accelerator=gpu"), ("trainer.accelerator=gpu",), ("trainer.accelerator=cuda",)],
)
def test_gpu_trainer_without_a_gpu_is_one_line(asked: tuple[str, ...], train_run, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_run(*FAST, *asked)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    accelerator = asked[-1].split("=")[1]
    assert err == [
        f"error: trainer.accelerator={accelerator} but this machine has no usable GPU; use trainer=cpu, "
        "or trainer.accelerator=auto (a GPU if there is one)"
    ]


def test_an_accelerator_lightning_rejects_later_gets_the_same_message() -> None:
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from omegaconf import OmegaConf

    from cnnlab.errors import ConfigError
    from cnnlab.runs.preflight import ACCELERATORS
    from cnnlab.training.build import build_trainer

    # the early check knows the names Lightning knows
    assert set(ACCELERATORS) == {*AcceleratorRegistry.available_accelerators(), "auto", "gpu"}
    trainer = OmegaConf.create({"_target_": "lightning.pytorch.Trainer", "accelerator": "mps"})
    with pytest.raises(ConfigError) as error:  # no MPS on Linux: Lightning says so when it builds the trainer
        build_trainer(trainer, [], [])
    assert str(error.value) == (
        "trainer.accelerator=mps but this machine has no usable MPS device; use trainer=cpu, "
        "or trainer.accelerator=auto (a GPU if there is one)"
    )


def test_a_long_library_message_is_cut_after_a_whole_word() -> None:
    from cnnlab.errors import reason_of

    message = "CUDAAccelerator can not run on your system since the accelerator is not available. " * 3
    reason = reason_of(ValueError(message), limit=100)
    assert reason.startswith("ValueError: CUDAAccelerator can not run")
    assert reason.endswith("is not available. CUDAAccelerator ...") and len(reason) < 120


EARLY_CHECKS = [
    (
        "data.root=/nonexistent",
        "error: MNIST not found: no /nonexistent/MNIST/raw/train-images-idx3-ubyte[.gz]",
    ),
    (
        "optimizer.lr=-1",
        "error: optimizer.lr=-1 is invalid; use a positive learning rate, e.g. optimizer.lr=0.05",
    ),
    ("optimizer.lr=abc", "error: optimizer.lr='abc' is not a number; fix the optimizer.* overrides"),
    (
        "trainer.accelerator=gpux",
        "error: trainer.accelerator=gpux is not an accelerator; use one of auto, cpu",
    ),
]


def test_data_learning_rate_and_accelerator_are_checked_before_torch_loads(tiny_data, tmp_path) -> None:
    """One interpreter runs the four commands: each stops with its line and a failed record, and neither
    torch nor Lightning was imported (they take 10-25 s on a busy 2-core machine)."""
    script = (
        "import sys, train\n"
        f"for number, override in enumerate({[override for override, _ in EARLY_CHECKS]!r}):\n"
        f"    sys.argv = ['train', 'model=mlp', 'data=mnist', 'data.root={tiny_data}',\n"
        f"                f'hydra.run.dir={tmp_path}/run{{number}}', override]\n"
        "    try:\n"
        "        train.main()\n"
        "    except SystemExit as stop:\n"
        "        print('exit', stop.code)\n"
        "print('loaded:', sorted(name for name in ('torch', 'lightning') if name in sys.modules))\n"
    )
    result = run_cli(["-c", script], cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("exit ")[1:] == ["2\n"] * 3 + ["2\nloaded: []\n"], result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(EARLY_CHECKS), errors
    for line, (_, expected) in zip(errors, EARLY_CHECKS, strict=True):
        assert line.startswith(expected), (line, expected)
    for number in range(len(EARLY_CHECKS)):
        record = read_run_record(tmp_path / f"run{number}")
        assert record["status"] == "failed" and record["before_training"] and record["seed"] == 0


@pytest.mark.parametrize("entry", ["evaluate", "predict"])
def test_corrupt_checkpoint_for_analysis_names_the_file_and_the_fix(
    entry: str, finished_checkpoint: Path, tmp_path, monkeypatch, capsys
) -> None:
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(finished_checkpoint.read_bytes()[:30000])
    with pytest.raises(SystemExit) as exit_info:
        image = [f"image={corrupt}"] if entry == "predict" else []
        run_entry(entry, [f"ckpt_path={corrupt}", *image], monkeypatch)
    assert exit_info.value.code == 2
    message = last_error_line(capsys)
    assert f"{corrupt} is corrupt or truncated" in message and "another checkpoint of the run" in message


@pytest.mark.parametrize("hydra_full_error", [None, "0"])  # Hydra reads only 1 as "full errors"
@pytest.mark.parametrize(
    ("typo", "meant"),
    [("trainer.max_epoch=1", "trainer.max_epochs"), ("modle=mlp", "model"), ("model.c=0.1", "model.C")],
)
def test_a_misspelt_key_names_the_closest_one(
    typo: str, meant: str, hydra_full_error: str | None, tiny_data, monkeypatch, capsys
) -> None:
    if hydra_full_error is not None:
        monkeypatch.setenv("HYDRA_FULL_ERROR", hydra_full_error)
    group = ["model=hog_svm"] if typo.startswith("model.") else []  # the groups chosen decide the keys
    with pytest.raises(SystemExit) as exit_info:
        run_entry("train", [*group, typo, f"data.root={tiny_data}"], monkeypatch)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"did you mean {meant}?" in err[0] and "+" not in err[0], err


def test_hydra_full_error_1_gets_hydras_own_exception_and_is_left_as_set(
    tiny_data, monkeypatch, capsys
) -> None:
    from hydra.errors import ConfigCompositionException

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigCompositionException, match="Could not override 'trainer.max_epoch'"):
        run_entry("train", ["trainer.max_epoch=1", f"data.root={tiny_data}"], monkeypatch)
    assert os.environ["HYDRA_FULL_ERROR"] == "1"
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    with pytest.raises(SystemExit):
        run_entry("train", ["trainer.max_epoch=1", f"data.root={tiny_data}"], monkeypatch)
    assert os.environ["HYDRA_FULL_ERROR"] == "0"  # the user's value again, once the command is done


def test_the_shared_data_defaults_are_not_offered_as_a_dataset(tiny_data, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_entry("train", ["data=common", f"data.root={tiny_data}"], monkeypatch)
    assert exit_info.value.code == 2
    err = last_error_line(capsys)
    options = err.split("choose one of: ", 1)[1].split(", ")
    assert err.startswith("error: there is no data option common;") and options == [
        "cifar10",
        "fashion_canvas",
        "fashion_mnist",
        "folder",
        "mnist",
        "mnist_canvas",
    ]
    # every classification dataset still has the shared settings (the canvases have their own module)
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF

    with initialize_config_dir(str(CONF), version_base="1.3"):
        for name in ("cifar10", "fashion_mnist", "mnist"):
            data = compose("train", [f"data={name}"]).data
            assert (
                data._target_ == "cnnlab.data.ImageDataModule"
                and data.batch_size == 128
                and data.name == name
            )


def test_a_run_failing_before_training_keeps_its_log_and_error_only(train_run, tmp_path, capsys) -> None:
    run_dir = tmp_path / "bad-config"
    with pytest.raises(SystemExit):
        train_run(*FAST, "logger=default", "data.val_size=1000", run_dir=run_dir)
    error = last_error_line(capsys).removeprefix("error: ")
    record = read_run_record(run_dir)
    assert record["status"] == "failed" and record["error"] == error and record["before_training"]
    assert "data.val_size=1000 is invalid" in (run_dir / "train.log").read_text()
    # nothing that TensorBoard or the results table would take for a run
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "metrics.json", "train.log"]
