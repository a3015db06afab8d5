"""Failures that do not end a sweep: a failed job records why in its own directory and the others run."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from cnnlab.errors import user_error
from cnnlab.runs.run_record import RunRecord, read_run_record, write_run_record

log = logging.getLogger(__name__)

USER_ERROR_EXIT = 2  # cnnlab.errors.exit_on_user_error's exit status


JOB_NAME_LIMIT = 120  # characters of a sweep job's folder name (file systems allow 255)


def job_dir_name(number: int | str, overrides: str, limit: int = JOB_NAME_LIMIT) -> str:
    """A sweep job's folder: its number and what it overrides (``3_model-smallcnn+seed-1``).

    Cut after the last whole override that fits ``limit`` (the number alone keeps names unique);
    a ``/`` in a value becomes ``_`` so that every job stays one folder below the sweep directory.
    """
    name = f"{number}_{overrides}".replace("/", "_") if overrides else str(number)
    if len(name) > limit:
        cut = name[: limit - 4]
        name = (cut[: cut.rfind(",")] if "," in cut else cut) + ",..."
    # Hydra's override grammar takes neither '=' nor ',' unquoted: the folder must pass as ckpt_path=<dir>
    return name.replace("=", "-").replace(",", "+")


def register_resolvers() -> None:
    """``${cnnlab.job_dir:${hydra.job.num},${hydra.job.override_dirname}}`` for conf/hydra/default.yaml."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("cnnlab.job_dir", job_dir_name, replace=True)


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def one_line(error: BaseException) -> str:
    cause = user_error(error)
    if cause is not None:
        return str(cause)
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}".rstrip(": ")


def record_failure(cfg: DictConfig, error: BaseException) -> None:
    """Write metrics.json with status failed, unless the directory holds a finished run or another
    rank writes it, or the run directory was refused (nothing may be written there)."""
    from cnnlab.runs.record import task_overrides
    from cnnlab.runs.resume import RunDirectoryError, run_state

    run_dir = Path(cfg.paths.output_dir)
    if _rank() != 0 or isinstance(user_error(error), RunDirectoryError):
        return
    if run_state(run_dir) == "completed":
        return
    record: RunRecord = {
        "status": "failed",
        "error": one_line(error),
        "error_type": type(user_error(error) or error).__name__,
        "model": _choice("model") or str(cfg.get("model", {}).get("_target_", "?")).rsplit(".")[-1].lower(),
        "dataset": cfg.get("data", {}).get("name"),
        "seed": cfg.get("seed"),
        "overrides": task_overrides(),
        "run_dir": str(run_dir),
        "failed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _log_to_file(f"the run failed: {record['error']}")
    if not any(run_dir.glob("checkpoints/*.ckpt")):
        record["before_training"] = True
        _drop_logs_of_no_run(run_dir)
    write_run_record(run_dir, record)


def _rank() -> int:
    """This process's rank, as Lightning numbers it: a run stopped by the checks before the heavy imports
    reads it from the launcher's environment as Lightning does, rather than import Lightning (seconds:
    docs/performance.md#start-up-and-early-errors)."""
    if "lightning.fabric" in sys.modules:
        from lightning.pytorch.utilities import rank_zero_only

        return rank_zero_only.rank
    keys = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")  # lightning.fabric's _get_rank
    return next((int(os.environ[key]) for key in keys if key in os.environ), 0)


def _log_to_file(message: str) -> None:
    """Into train.log (Hydra's file handler) only: the console already shows the error line."""
    entry = logging.LogRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(entry)


# what the loggers start writing as soon as the trainer exists (conf/logger/)
LOGGER_FOLDERS = ("tensorboard", "csv")


def _drop_logs_of_no_run(run_dir: Path) -> None:
    """A run that failed before its first checkpoint (a config or data error, mostly) keeps its train.log,
    .hydra/ and failed record, but not the logger folders: TensorBoard would list them as runs."""
    import shutil

    for name in (*LOGGER_FOLDERS, "checkpoints"):
        folder = run_dir / name
        if folder.is_dir() and not any(folder.glob("**/*.ckpt")):
            shutil.rmtree(folder, ignore_errors=True)


def _choice(group: str) -> str | None:
    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


@contextmanager
def failure_recorded(cfg: DictConfig) -> Iterator[None]:
    """A run that raises leaves a record of its failure in its directory (then the error goes on)."""
    try:
        yield
    except Exception as error:
        record_failure(cfg, error)
        raise


@contextmanager
def sweep_goes_on() -> Iterator[None]:
    """Under --multirun, a failed job (recorded in its directory) does not end the sweep.

    User errors were already printed as one line; other errors go to the job's log with their
    traceback. Interruptions (Ctrl-C, a kill) still stop the sweep.
    """
    if not is_multirun():
        yield
        return
    try:
        yield
    except SystemExit as exit_:
        if exit_.code != USER_ERROR_EXIT:
            raise
        log.warning("job %s failed (see its metrics.json); the sweep goes on", HydraConfig.get().job.num)
    except Exception as error:
        log.error("job %s failed: %s\n%s", HydraConfig.get().job.num, one_line(error), traceback.format_exc())
        print(f"error: {one_line(error)}", file=sys.stderr)


class SweepSummary(Callback):
    """After a sweep: one line per failed, preempted or killed job, and exit status 1 if there is any
    (as ``make -k`` does).

    An Optuna search treats failed trials as part of the search (e.g. a learning rate that diverges),
    so there the exit status stays 0.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        unfinished = []  # (job dir, status, why)
        for job_dir in sorted(path.parent for path in sweep_dir.glob("*/.hydra")):
            try:
                record = read_run_record(job_dir)
            except FileNotFoundError:
                # a job of hydra/launcher=gpus is a process of its own: killed (e.g. out of memory), it
                # leaves a checkpoint and no record
                if (job_dir / "checkpoints" / "last.ckpt").exists():
                    unfinished.append((job_dir, "interrupted", "no record: the job was killed"))
                continue
            except (OSError, ValueError):
                continue
            if record.get("status") == "failed":
                unfinished.append((job_dir, "failed", record.get("error", "?")))
            elif record.get("status") == "preempted":
                unfinished.append(
                    (job_dir, "preempted", f"by {record.get('signal')}, at step {record.get('global_step')}")
                )
        for job_dir, status, why in unfinished:
            print(f"{status}: {job_dir}: {why}", file=sys.stderr)
        if unfinished:
            print(
                f"{len(unfinished)} job(s) of the sweep did not finish; `python -m results {sweep_dir}` "
                "lists every run; the same command with resume=true continues preempted and killed ones",
                file=sys.stderr,
            )
            if "optuna" not in str(config.hydra.sweeper.get("_target_", "")):
                raise SystemExit(1)
