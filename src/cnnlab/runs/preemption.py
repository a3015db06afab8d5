"""Preemption: a run told to stop (SIGTERM, or the signal SLURM sends before the time limit) saves a
mid-epoch checkpoint, records ``status: preempted`` and exits; on SLURM it requeues its own job.

The signal handling itself is the ``cnnlab.callbacks.preemption`` callback; this module holds what the
run does afterwards.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


class Preempted(SystemExit):
    """Training stopped at a preemption notice after saving ``checkpoint``; exit status 128 + the signal.

    A SystemExit, as Lightning's own SIGTERMException: not a failure of the run, and it ends a sweep.
    """

    def __init__(self, signum: int, epoch: int, step: int, checkpoint: Path, requeue: bool) -> None:
        super().__init__(128 + signum)
        self.signum, self.epoch, self.step = signum, epoch, step
        self.checkpoint, self.requeue = checkpoint, requeue

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def reason(self) -> str:
        """``stopped by Ctrl-C (SIGINT)``, ``preempted by SIGTERM``: why training stopped, for a person."""
        if self.signum == signal.SIGINT:
            return "stopped by Ctrl-C (SIGINT)"
        return f"preempted by {self.signal_name}"


def slurm_job_id() -> str | None:
    """This SLURM job's id (``<array job>_<task>`` for an array task, as scontrol names it), or None."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9_]+", job) else None


def requeue_slurm_job() -> str | None:
    """``scontrol requeue`` this SLURM job, which then runs again and resumes; its id (None: not requeued)."""
    job = slurm_job_id()
    if job is None:
        return None
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        log.warning("SLURM job %s: scontrol not found, the job is not requeued", job)
        return None
    result = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True)
    if result.returncode != 0:
        log.warning("SLURM job %s: scontrol requeue failed: %s", job, result.stderr.strip())
        return None
    log.info("requeued SLURM job %s: it continues from its last checkpoint when it runs again", job)
    return job
