"""Continuing an interrupted run in its own directory, and refusing to overwrite one.

A run directory is *completed* (metrics.json with status completed), *interrupted* (checkpoints/last.ckpt
but no finished record) or *new*. ``ckpt_path=last`` continues the directory's last.ckpt, ``ckpt_path=<file>``
continues from that checkpoint, ``resume=true`` continues whatever the directory holds and skips a completed
run (so rerunning a sweep command finishes the sweep), and ``resume=<run dir>`` reruns that directory's
saved command with ``resume=true``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnlab.errors import CheckpointError, ConfigError, exit_on_user_error, reason_of
from cnnlab.runs.identity import comparable_overrides, defines_the_run, override_key
from cnnlab.runs.record import RUN_RECORD, flatten_config, read_run_record

log = logging.getLogger(__name__)

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
# keys of a Lightning training checkpoint (a bare state_dict or a weights file has none of them)
TRAINING_CHECKPOINT_KEYS = {"state_dict", "loops", "optimizer_states", "global_step"}


class RunDirectoryError(ConfigError):
    """The run directory holds a run that this command would overwrite: nothing is written to it."""


def run_state(run_dir: Path) -> str:
    """``completed``, ``failed`` (a record saying so), ``interrupted`` (a last.ckpt and no record, or a
    record of a preempted run) or ``new``."""
    if (run_dir / RUN_RECORD).exists():
        try:
            status = read_run_record(run_dir).get("status", "completed")
        except (OSError, ValueError):
            return "completed"  # unreadable: never overwrite what might be a finished run
        if status == "preempted":
            return "interrupted"
        return "failed" if status == "failed" else "completed"
    return "interrupted" if (run_dir / LAST_CHECKPOINT).exists() else "new"


def resume_flag(cfg: DictConfig) -> bool:
    value = cfg.get("resume")
    if value in (None, False, True):
        return bool(value)
    raise ConfigError(
        f"resume={value} continues one run directory: use it without --multirun (python -m train "
        "resume=<run dir>); to continue a sweep, rerun its command with resume=true"
    )


def check_run_dir(run_dir: Path, cfg: DictConfig) -> None:
    """Refuse, before anything is written there, a directory whose run this command would overwrite."""
    state = run_state(run_dir)
    resume, ckpt_path = resume_flag(cfg), cfg.get("ckpt_path")
    if state == "completed" and not resume:
        raise RunDirectoryError(
            f"{run_dir} already holds a finished run ({RUN_RECORD}); choose another hydra.run.dir "
            "(or add resume=true to skip finished runs; to train it for longer: python -m train "
            f"resume={run_dir} trainer.max_epochs=<more>), nothing was overwritten"
        )
    if (run_dir / LAST_CHECKPOINT).exists() and not (resume or ckpt_path):
        raise RunDirectoryError(
            f"{run_dir} holds an interrupted run ({LAST_CHECKPOINT}); continue it with ckpt_path=last "
            "(or resume=true), or choose another hydra.run.dir; nothing was overwritten"
        )


def finished_record(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The record of a run already finished in ``run_dir`` (to skip it under ``resume=true``), else None.

    None also for a finished run that this command trains for longer: the same overrides but a larger
    ``trainer.max_epochs`` (see ``extends_finished_run``).
    """
    check_run_dir(run_dir, cfg)
    if run_state(run_dir) != "completed":
        return None
    record = read_run_record(run_dir)
    # the same run: equal in what defines it (cnnlab.runs.identity), seed included, wherever it ran
    overrides = comparable_overrides(_task_overrides())
    saved = comparable_overrides(record.get("overrides", []))
    if not overrides or saved == overrides:
        return record
    if comparable_overrides(saved, ignoring=[EPOCHS]) == comparable_overrides(overrides, ignoring=[EPOCHS]):
        return None if _check_extension(record, cfg, run_dir) else record
    raise RunDirectoryError(
        f"{run_dir} holds a finished run of other overrides ({' '.join(saved)}); resume=true only "
        "skips the same command's runs (or trains them for longer with a larger trainer.max_epochs): "
        "choose another hydra.sweep.dir / hydra.run.dir"
    )


EPOCHS = "trainer.max_epochs"
# how a run was started: the settings resume=<run dir> replaces with its own resume=true
STARTED_BY = ("resume", "ckpt_path")


def _check_extension(record: dict[str, Any], cfg: DictConfig, run_dir: Path) -> bool:
    """Whether ``cfg`` trains the finished run for longer (False: the same length, skip it); else refuse."""
    requested, trained = cfg.trainer.get("max_epochs"), record.get("max_epochs")
    if trained is None:
        raise RunDirectoryError(
            f"{run_dir} holds a finished run without epochs ({record['model']}): it "
            "cannot be trained for longer; choose another hydra.run.dir"
        )
    if requested == trained:
        return False
    if requested is None or requested < trained:
        raise RunDirectoryError(
            f"{run_dir} holds a run finished after trainer.max_epochs={trained}; {EPOCHS}={requested} does "
            f"not train it for longer: pass {EPOCHS} > {trained}, or choose another hydra.run.dir"
        )
    if not (run_dir / LAST_CHECKPOINT).is_file():
        raise RunDirectoryError(
            f"{run_dir} holds a finished run without {LAST_CHECKPOINT} to continue from; train a new "
            f"run with {EPOCHS}={requested} in another hydra.run.dir"
        )
    log.warning(
        "training the finished run in %s for longer: %d -> %d epochs, from its %s; its %s is replaced at "
        "the end (the previous figures are kept under extended_from)",
        run_dir,
        trained,
        requested,
        LAST_CHECKPOINT,
        RUN_RECORD,
    )
    return True


def extended_record(run_dir: Path) -> dict[str, Any] | None:
    """The finished run's record when this run trains it for longer (``finished_record`` let it through)."""
    return read_run_record(run_dir) if run_state(run_dir) == "completed" else None


def prepare_resume(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The checkpoint this run continues from (validated), or None for a fresh start.

    Sets ``cfg.ckpt_path`` to it and points the loggers at its global step, so that what was logged
    after the checkpoint is replaced rather than repeated.
    """
    requested = cfg.get("ckpt_path")
    checkpoint: Path | None = None
    if requested not in (None, "last"):
        checkpoint = Path(str(requested)).expanduser().resolve()
        if not checkpoint.is_file():
            raise CheckpointError(
                f"ckpt_path={requested}: no such file; pass a .ckpt that python -m train wrote"
            )
    elif requested == "last" or resume_flag(cfg):
        checkpoint = run_dir / LAST_CHECKPOINT if (run_dir / LAST_CHECKPOINT).is_file() else None
        if checkpoint is None:
            log.info("nothing to resume in %s (no %s): starting from the beginning", run_dir, LAST_CHECKPOINT)
    step = 0
    if checkpoint is not None:
        state = load_training_checkpoint(checkpoint)
        step = int(state["global_step"])
        _warn_config_drift(state.get("cnnlab_config"), cfg)
        log.info("resuming from %s %s", checkpoint, checkpoint_position(state))
    with open_dict(cfg):
        cfg.ckpt_path = str(checkpoint) if checkpoint is not None else None
        for logger in (cfg.get("logger") or {}).values():
            target = str((logger or {}).get("_target_", ""))
            if target.endswith("TensorBoardLogger"):
                logger.purge_step = step  # TensorBoard hides the events logged at or after this step
            elif target == "cnnlab.loggers.CSVLogger":
                logger.resume_step = step
    return checkpoint


def training_position(epoch: int, step: int, mid_epoch: bool) -> str:
    """Where training stopped, in the words of the preemption and resume lines: ``in epoch 2, after step
    152`` (``epoch`` is the number counted from 1) or ``at the end of epoch 1, after step 76``.

    Epochs count from 1 everywhere a person reads them, as in the checkpoint names (epoch_001.ckpt is
    the model at the end of epoch 1); ``step`` is the global step, the optimizer steps taken so far.
    """
    where = f"in epoch {epoch}" if mid_epoch else f"at the end of epoch {epoch}"
    return f"{where}, after step {step}"


def checkpoint_position(state: dict[str, Any]) -> str:
    """``training_position`` of a training checkpoint, read from its fit loop's epoch progress."""
    progress = state.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    started, finished = progress.get("started"), progress.get("processed")
    step = int(state.get("global_step", 0))
    if started is None or finished is None:  # not written by Lightning's fit loop
        return f"after step {step}"
    # an epoch started whose batches did not all run is a mid-epoch checkpoint (a step checkpoint, a
    # preemption); Lightning's own "epoch" is the 0-based epoch, or the next one in a checkpoint saved at
    # the end of training, so it is not used here
    if started > finished:
        return training_position(int(started), step, mid_epoch=True)
    return training_position(int(finished), step, mid_epoch=False)


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning training checkpoint, or a one-line error saying why ``path`` is not one."""
    import torch

    try:
        # Lightning's own format pickles hyperparameters, so it cannot be read with weights_only
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckpointError(
            f"{path} is corrupt or truncated (reading it failed with {reason_of(error)}); resume from "
            "another checkpoint (e.g. "
            "checkpoints/epoch_*.ckpt) or start a new run without ckpt_path / resume"
        ) from error
    if not isinstance(checkpoint, dict) or not checkpoint.keys() >= TRAINING_CHECKPOINT_KEYS:
        raise CheckpointError(
            f"{path} is not a training checkpoint of python -m train (no optimizer and loop state: a bare "
            "state_dict or weights file?); resume from a checkpoints/last.ckpt or epoch_*.ckpt"
        )
    return checkpoint


def check_checkpoint_fits(path: Path, module: Any) -> None:
    """Fail with the reason when a checkpoint's weights do not fit the model this run built."""
    checkpoint = load_training_checkpoint(path)
    saved, expected = checkpoint["state_dict"], module.state_dict()
    missing = sorted(expected.keys() - saved.keys())
    unexpected = sorted(saved.keys() - expected.keys())
    resized = sorted(k for k in expected.keys() & saved.keys() if saved[k].shape != expected[k].shape)
    if not (missing or unexpected or resized):
        return
    config = checkpoint.get("cnnlab_config") or {}
    origin = ""
    if config:
        model = str(config.get("model", {}).get("_target_", "?")).rsplit(".", 1)[-1]
        origin = f" (it holds {model} trained on {config.get('data', {}).get('name', '?')})"
    example = (resized or missing or unexpected)[0]
    raise CheckpointError(
        f"{path} was saved by another model{origin}: {len(missing)} missing, {len(unexpected)} unexpected "
        f"and {len(resized)} resized tensors, e.g. {example}; resume it with the model= / data= "
        "overrides it was trained with"
    )


def config_drift(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings that define the run (``cnnlab.runs.identity``) and differ between two configs:
    where the run reads and writes, how it logs or how it was continued may change on a resume."""
    now, then = flatten_config(now), flatten_config(saved)
    keys = {key for key in now.keys() | then.keys() if defines_the_run(key)}
    return sorted(key for key in keys if _setting(key, now.get(key)) != _setting(key, then.get(key)))


def _warn_config_drift(saved: dict[str, Any] | None, cfg: DictConfig) -> None:
    """Say which settings differ from the checkpoint's run (e.g. conf/ edited since): resuming is allowed."""
    if not saved:
        return
    current = OmegaConf.to_container(cfg, resolve=True)
    now, then = flatten_config(current), flatten_config(saved)
    # more epochs is what training a run for longer asks for, not a setting that drifted
    changed = [
        key
        for key in config_drift(saved, current)
        if not (key == "trainer.max_epochs" and _more_epochs(then.get(key), now.get(key)))
    ]
    if changed:
        shown = ", ".join(f"{key}: {then.get(key)!r} -> {now.get(key)!r}" for key in changed[:5])
        log.warning("resuming with settings that differ from the checkpoint's run: %s", shown)


def _more_epochs(before: Any, after: Any) -> bool:
    return isinstance(before, int) and isinstance(after, int) and 0 <= before < after


def _setting(key: str, value: Any) -> Any:
    """A ``_target_`` counts by the name it builds: a class moved to another module is the same setting."""
    return value.rsplit(".", 1)[-1] if key.endswith("_target_") and isinstance(value, str) else value


def _task_overrides() -> list[str]:
    from cnnlab.runs.record import task_overrides

    return task_overrides()


def resume_argv(argv: list[str]) -> list[str]:
    """``python -m train resume=<run dir> [overrides]`` -> the run's saved overrides, continued in place.

    Overrides given beside ``resume=`` replace the saved ones with the same key (e.g. a longer
    ``trainer.max_epochs``).
    """
    target = next((a for a in argv[1:] if re.fullmatch(r"resume=(?!(true|false|null)$).+", a, re.I)), None)
    if target is None:
        return argv
    run_dir = Path(target.split("=", 1)[1]).expanduser().resolve()
    saved_overrides = run_dir / ".hydra" / "overrides.yaml"
    if {"-m", "--multirun"} & set(argv):
        raise ConfigError(f"{target} continues one run: drop --multirun, or rerun the sweep with resume=true")
    if not saved_overrides.is_file():
        raise ConfigError(
            f"{target}: {saved_overrides} not found; pass a run directory written by python -m train"
        )
    extra = [a for a in argv[1:] if a != target]
    # the saved overrides keep where the run read its data and how it guards against interruptions (step
    # checkpoints, preemption signals), as the same command with ckpt_path=last would; only how it was
    # started (resume, ckpt_path) is decided anew
    replaced = {override_key(a) for a in extra} | {"hydra.run.dir", *STARTED_BY}
    saved = [str(o) for o in OmegaConf.load(saved_overrides) if override_key(str(o)) not in replaced]
    return [argv[0], *saved, *extra, f"hydra.run.dir='{run_dir}'", "resume=true"]


class RunDirectoryGuard(Callback):
    """Hydra callback: refuse a run or sweep directory holding runs, before Hydra writes its config there."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with exit_on_user_error():
            check_run_dir(Path(config.hydra.run.dir).absolute(), config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).absolute()
        if not sweep_dir.is_dir():
            return
        with exit_on_user_error():
            resume_flag(config)  # resume=<dir> makes no sense for a sweep
            states = [run_state(job.parent) for job in sweep_dir.glob("*/.hydra")]
            held = [s for s in states if s in ("completed", "interrupted")]
            if held and not config.get("resume"):
                raise RunDirectoryError(
                    f"{sweep_dir} already holds {states.count('completed')} finished and "
                    f"{states.count('interrupted')} interrupted runs; add resume=true to finish this sweep "
                    "(finished jobs are skipped), or choose another hydra.sweep.dir; nothing was overwritten"
                )
