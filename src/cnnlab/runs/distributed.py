"""DDP under Hydra: the ranks Lightning starts join this run's directory instead of making their own."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, read_write

from cnnlab.runs.sweeps import is_multirun


def is_global_zero() -> bool:
    """The process that writes the run record (rank 0; the only one without DDP)."""
    return rank_zero_only.rank == 0


def uses_ddp(cfg: DictConfig) -> bool:
    strategy = str(cfg.trainer.get("strategy", ""))
    return "ddp" in strategy and "spawn" not in strategy  # ddp_spawn starts its ranks without argv


@contextmanager
def ranks_join_this_job(cfg: DictConfig) -> Iterator[None]:
    """Make Lightning's DDP relaunch of the other ranks run this sweep job, in this job's directory.

    Lightning's ``ddp`` starts each other rank as ``python -m train <sys.argv[1:]>
    hydra.run.dir=<HydraConfig run.dir> hydra.output_subdir=null`` (see
    lightning/fabric/strategies/launchers/subprocess_script.py). In a single run that is this run's
    directory, and the ranks write no second .hydra. In a sweep job sys.argv is the whole sweep and
    run.dir is not the job's directory, so each rank would start a sweep of its own: for the job's
    duration the argv is the job's overrides and run.dir its directory. Lightning also leaves the
    rank variables (LOCAL_RANK, WORLD_SIZE, ...) and the process group behind, which would make the
    next job of the sweep wait for ranks that have exited: both are cleared afterwards.
    """
    if not (uses_ddp(cfg) and is_multirun() and "LOCAL_RANK" not in os.environ):
        yield
        return
    hydra = HydraConfig.get()
    argv, environ, run_dir = list(sys.argv), dict(os.environ), hydra.run.dir
    sys.argv = [argv[0], *hydra.overrides.task]
    with read_write(hydra.run):
        hydra.run.dir = hydra.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = argv
        with read_write(hydra.run):
            hydra.run.dir = run_dir
        os.environ.clear()
        os.environ.update(environ)
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
