"""hydra/launcher=gpus: one job per device at a time, devices handed on as jobs end (run here on the CPU)."""

from __future__ import annotations

import json
from datetime import datetime
from itertools import combinations
from pathlib import Path

import pytest

from cnnlab.errors import ConfigError
from hydra_plugins.cnnlab_launchers.gpus_launcher import devices_per_job, resolve_devices
from tests.conftest import REPO, job_dir, run_cli, run_entry

# tiny jobs; data.num_workers stays at its default (auto: DataLoader worker processes in every job)
JOB = ["model=mlp", "data=mnist", "evaluate=false", "data.val_size=40", "data.batch_size=32"]
JOB += ["trainer.max_epochs=1", "trainer.accelerator=cpu", "logger=csv"]


def interval(record: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(record["started_at"]), datetime.fromisoformat(record["finished_at"])


def test_two_devices_run_three_jobs_never_two_on_one_device(tmp_path: Path, tiny_data: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    command = ["-m", "train", "--multirun", "hydra/launcher=gpus", "hydra.launcher.devices=[0,1]"]
    command += [f"hydra.sweep.dir={sweep_dir}", f"data.root={tiny_data}", *JOB, "seed=0,1,2"]
    result = run_cli(command, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads((job_dir(sweep_dir, n) / "metrics.json").read_text()) for n in range(3)]
    assert [r["status"] for r in records] == ["completed"] * 3
    assert sorted(r["seed"] for r in records) == [0, 1, 2]
    assert {r["cuda_visible_devices"] for r in records} <= {"0", "1"}
    for a, b in combinations(records, 2):
        (start_a, end_a), (start_b, end_b) = interval(a), interval(b)
        if start_a < end_b and start_b < end_a:  # ran at the same time: never on one device
            assert a["cuda_visible_devices"] != b["cuda_visible_devices"], (a, b)
    # the launcher's log, in order: jobs 0 and 1 start on the two devices before any job ends, and
    # job 2 starts only after one has ended, on the device that job freed
    events = [line.split("\t", 1)[1] for line in result.stdout.splitlines() if "\t#" in line]
    starts = {int(e[1]): i for i, e in enumerate(events) if " -> CUDA_VISIBLE_DEVICES=" in e}
    ends = {int(e[1]): i for i, e in enumerate(events) if " ended (exit 0)" in e}
    assert sorted(starts) == sorted(ends) == [0, 1, 2], events
    assert max(starts[0], starts[1]) < min(ends.values())
    first_free = min(ends, key=ends.get)
    assert starts[2] > ends[first_free]
    assert records[2]["cuda_visible_devices"] == records[first_free]["cuda_visible_devices"]


def test_device_pool_and_devices_per_job() -> None:
    assert resolve_devices(None, ["0", "1"]) == ["0", "1"]  # default: every GPU
    assert resolve_devices([1], ["0", "1"]) == ["1"]
    assert resolve_devices([0, 1], []) == ["0", "1"]  # no GPU: named devices, each job on the CPU
    with pytest.raises(ConfigError, match="names GPU 7, which this machine does not have"):
        resolve_devices([0, 7], ["0", "1"])
    with pytest.raises(ConfigError, match="found no GPU"):
        resolve_devices(None, [])
    assert devices_per_job(2, 4) == 2 and devices_per_job("auto", 4) == 1 and devices_per_job([0, 1], 2) == 2
    with pytest.raises(ConfigError, match="asks for 4 devices per job but hydra.launcher.devices holds 2"):
        devices_per_job(4, 2)


def test_more_devices_per_job_than_the_pool_is_one_line(
    tmp_path: Path, tiny_data: Path, monkeypatch, capsys
) -> None:
    sweep_dir = tmp_path / "sweep"
    args = [
        "--multirun",
        "hydra/launcher=gpus",
        "hydra.launcher.devices=[0,1]",
        "trainer=ddp",
        "trainer.devices=3",
    ]
    with pytest.raises(SystemExit) as exit_info:
        run_entry(
            "train", [*args, f"hydra.sweep.dir={sweep_dir}", f"data.root={tiny_data}", *JOB], monkeypatch
        )
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert message[-1].startswith("error: trainer.devices=3 asks for 3 devices per job")
    assert not list(sweep_dir.glob("*/metrics.json"))
