"""``hydra/launcher=gpus``: the sweep's jobs in parallel, each alone on its own device(s).

Each job is a fresh ``python -m <app> <job overrides> hydra.run.dir=<job dir>`` process whose
``CUDA_VISIBLE_DEVICES`` names the devices it holds; a device goes to the next waiting job as soon as
its job ends. Fresh processes (rather than joblib's worker pool) keep DataLoader workers, CUDA
contexts and Lightning's DDP relaunch exactly as in a single run, and a crash, an out-of-memory kill
or a preemption ends one job only. Hydra imports this module at every start: keep it light (torch and
cnnlab are imported only when a sweep uses it).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)  # preemption notices: each job saves and stops


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (none on a machine without GPUs)."""
    import torch  # only when a sweep uses this launcher: Hydra imports plugins at every start

    count = torch.cuda.device_count()
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None and inherited.strip():
        return [entry.strip() for entry in inherited.split(",")][:count]
    return [str(index) for index in range(count)]


def resolve_devices(devices: Any, gpus: Sequence[str]) -> list[str]:
    """The device pool: ``devices`` as named (checked against the GPUs, if any), else every GPU."""
    from cnnlab.errors import ConfigError

    if devices is None:
        if not gpus:
            raise ConfigError(
                "hydra/launcher=gpus found no GPU; name the devices (hydra.launcher.devices=[0,1]) to run "
                "each job on the CPU under its own CUDA_VISIBLE_DEVICES, or use hydra/launcher=parallel"
            )
        return list(gpus)
    if isinstance(devices, (int, str)):
        devices = [devices]
    pool = [str(device).strip() for device in devices]
    if not pool or len(set(pool)) != len(pool) or not all(pool):
        raise ConfigError(
            f"hydra.launcher.devices={list(devices)} is invalid; name each device once, e.g. [0,1]"
        )
    missing = [device for device in pool if device not in gpus]
    if gpus and missing:
        raise ConfigError(
            f"hydra.launcher.devices names GPU {','.join(missing)}, which this machine does not have (GPUs: "
            f"{','.join(gpus)}); name only those, or leave hydra.launcher.devices unset for all of them"
        )
    return pool


def devices_per_job(trainer_devices: Any, pool_size: int) -> int:
    """How many devices a job takes: ``trainer.devices`` when it is a count or a list, else 1."""
    from cnnlab.errors import ConfigError

    if isinstance(trainer_devices, (list, tuple, ListConfig)):
        wanted = len(trainer_devices)
    elif isinstance(trainer_devices, int) or (isinstance(trainer_devices, str) and trainer_devices.isdigit()):
        wanted = int(trainer_devices)
    else:  # auto / -1: every device the job sees, which is the one it is given
        wanted = 1
    if wanted < 1:
        wanted = 1
    if wanted > pool_size:
        raise ConfigError(
            f"trainer.devices={trainer_devices} asks for {wanted} devices per job but hydra.launcher.devices "
            f"holds {pool_size}; lower trainer.devices or name more devices"
        )
    return wanted


class Job:
    """One job of the sweep: its overrides, directory, the devices it needs and, once started, holds."""

    # a plain class: Hydra's plugin scan executes this module outside sys.modules, where dataclasses fail
    def __init__(
        self, index: int, overrides: list[str], config: DictConfig, run_dir: Path, needed: int
    ) -> None:
        self.index, self.overrides, self.config, self.run_dir = index, overrides, config, run_dir
        self.devices_needed = needed
        self.devices: list[str] = []
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None


class GpusLauncher(Launcher):
    def __init__(self, devices: Any = None, poll_interval_s: float = 0.2) -> None:
        self.devices = OmegaConf.to_container(devices) if isinstance(devices, ListConfig) else devices
        self.poll_interval_s = poll_interval_s
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self._signal: int | None = None
        self._running: list[Job] = []

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from cnnlab.errors import exit_on_user_error

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        with exit_on_user_error():
            pool = resolve_devices(self.devices, visible_gpus())
            jobs = [self._job(initial_job_idx + n, list(o), len(pool)) for n, o in enumerate(job_overrides)]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(jobs)} jobs on devices {','.join(pool)} (one job per device at a time)")
        self._run(jobs, pool)
        return [self._job_return(job) for job in jobs]

    def _job(self, index: int, overrides: list[str], pool_size: int) -> Job:
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            config.hydra.job.id = index
            config.hydra.job.num = index
        HydraConfig.instance().set_config(config)  # the sweep subdir may interpolate hydra.job.*
        run_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        trainer = config.get("trainer") or {}
        return Job(
            index, overrides, config, run_dir.absolute(), devices_per_job(trainer.get("devices"), pool_size)
        )

    def _command(self, job: Job) -> list[str]:
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        app = ["-m", spec.name] if spec is not None and spec.name else [str(Path(sys.argv[0]).absolute())]
        return [sys.executable, *app, *job.overrides, f"hydra.run.dir='{job.run_dir}'"]

    def _start(self, job: Job, devices: list[str], parallel: int) -> None:
        job.devices = devices
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(devices)}
        # CPU threads shared among the jobs running at once (torch would give each job every core)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
        shown = " ".join(filter_overrides(job.overrides))
        log.info(f"\t#{job.index} : {shown} -> CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}")
        job.process = subprocess.Popen(self._command(job), env=env)

    def _run(self, jobs: list[Job], pool: list[str]) -> None:
        waiting, free = deque(jobs), list(pool)
        running = self._running
        parallel = max(1, min(len(jobs), len(pool) // min(job.devices_needed for job in jobs)))
        previous = {signum: signal.signal(signum, self._on_signal) for signum in FORWARDED_SIGNALS}
        try:
            while waiting or running:
                # first come, first served: a job waits until enough devices are free, then takes them
                while waiting and self._signal is None and waiting[0].devices_needed <= len(free):
                    job = waiting.popleft()
                    taken, free = free[: job.devices_needed], free[job.devices_needed :]
                    self._start(job, taken, parallel)
                    running.append(job)
                if self._signal is not None:
                    waiting.clear()
                time.sleep(self.poll_interval_s)
                for job in [job for job in running if job.process and job.process.poll() is not None]:
                    job.returncode = job.process.returncode
                    running.remove(job)
                    free = sorted([*free, *job.devices], key=pool.index)  # back to the pool, in its order
                    freed = ",".join(job.devices)
                    log.info(
                        f"\t#{job.index} ended (exit {job.returncode}); CUDA_VISIBLE_DEVICES={freed} is free"
                    )
                    self._report(job)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if self._signal is not None:
            name = signal.Signals(self._signal).name
            not_started = sum(job.process is None for job in jobs)
            print(
                f"sweep stopped by {name}: running jobs saved a checkpoint, {not_started} job(s) not "
                "started; rerun the same command with resume=true to finish it",
                file=sys.stderr,
            )
            raise SystemExit(128 + self._signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        """A preemption notice: pass it to every running job (each saves and stops), start no new job."""
        self._signal = signum
        for job in self._running:
            if job.process is not None and job.process.poll() is None:
                job.process.send_signal(signum)

    def _report(self, job: Job) -> None:
        if job.returncode == 0:
            return
        record = _read_record(job.run_dir)
        if record.get("status") in ("failed", "preempted"):
            log.warning(f"job #{job.index} {record['status']}: {record.get('error', job.run_dir)}")
        else:
            log.error(
                f"job #{job.index} exited with status {job.returncode} without a record (killed?): "
                f"{job.run_dir}; rerun the sweep with resume=true to continue it"
            )

    def _job_return(self, job: Job) -> JobReturn:
        """Completed for Hydra whatever happened (a failed job is recorded in its directory, as in-process
        sweeps do); the value a sweeper optimises is the run's best_val_acc, NaN if it did not finish."""
        record = _read_record(job.run_dir)
        value = record.get("best_val_acc") if record.get("status") == "completed" else None
        result = JobReturn(
            overrides=job.overrides,
            cfg=job.config,
            hydra_cfg=job.config,
            working_dir=str(job.run_dir),
            task_name=str(job.config.hydra.job.name),
            status=JobStatus.COMPLETED,
        )
        result.return_value = float("nan") if value is None else value
        return result


def _read_record(run_dir: Path) -> dict[str, Any]:
    from cnnlab.runs.run_record import read_run_record  # the standard library only: light at start-up

    try:
        return dict(read_run_record(run_dir))
    except (OSError, ValueError):
        return {}
