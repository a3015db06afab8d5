"""``python -m bench suite=<name>``: a named list of bench / train / sweep / evaluate commands, each run as
its own process, with one entry per item in ``suite.json`` and a markdown table in ``suite.md``.

An item that fails or times out is recorded as such and the suite goes on. ``bench.dry_run=true`` runs
each item for a step or two (conf/suites/<name>.yaml says how), so a suite can be checked on any machine.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cnnlab.errors import ConfigError
from cnnlab.runs.identity import Category, category, override_key
from cnnlab.runs.record import device_name, task_overrides, write_json_atomic

log = logging.getLogger(__name__)

# the figures each kind of item reports, from the JSON its command writes
BENCH_FIGURES = (
    "precision",
    "train_images_per_s",
    "inference_images_per_s",
    "overhead_ratio",
    "overhead_ms_per_step",
    "dataloader_images_per_s",
    "tensor_loader_images_per_s",
    "peak_memory_mb",
)
TRAIN_FIGURES = ("test_acc", "test_tta_acc", "train_time_s", "epochs", "precision")
ENTRY = {"bench": "bench", "train": "train", "sweep": "train", "evaluate": "evaluate"}


def load_suite(config_dir: Path, name: str) -> DictConfig:
    path = config_dir / "suites" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (config_dir / "suites").glob("*.yaml")))
        raise ConfigError(f"suite={name} is unknown; use one of: {known}")
    return OmegaConf.load(path)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def forwarded(kind: str) -> list[str]:
    """The overrides given beside suite= that an item of ``kind`` takes (evaluate: where the data is)."""
    given = [
        o for o in task_overrides() if not o.startswith(("suite=", "bench.dry_run=", "bench.items=", "hydra"))
    ]
    if kind == "evaluate":
        # an evaluation re-reads the test set, and keeps the rest of the run it evaluates: it takes only
        # where the data is (data.root, data.download: the location settings that evaluate.yaml has)
        return [o for o in given if category(o) is Category.LOCATION and override_key(o).startswith("data.")]
    return given


def item_command(
    item: DictConfig, item_dir: Path, suite: DictConfig, done: dict[str, Path], dry_run: bool, gpu: bool
):
    """The command line of one item (None when it depends on an item that produced nothing)."""
    kind = str(item.kind)
    if kind not in ENTRY:
        raise ConfigError(f"suite item {item.name!r} has kind={kind}; use bench, train, sweep or evaluate")
    args = [str(a) for a in item.get("args", [])]
    if kind == "evaluate":
        source = done.get(str(item.get("of")))
        if source is None:
            return None
        args = [f"ckpt_path='{source}'", f"output_dir={item_dir}", "tensorboard=false", *args]
    elif kind == "sweep":
        args = [*args, f"hydra.sweep.dir={item_dir}"]
    else:
        args = [*args, f"hydra.run.dir={item_dir}"]
    if kind != "evaluate":
        args.append(f"trainer.accelerator={'gpu' if gpu else 'cpu'}")
    if dry_run:
        args += [str(a) for a in suite.get("dry_run", {}).get(kind, [])]
        if not gpu:
            args += [str(a) for a in suite.get("dry_run_cpu", {}).get(kind, [])]
    args += forwarded(kind)
    multirun = ["--multirun"] if kind == "sweep" else []
    return [sys.executable, "-m", ENTRY[kind], *multirun, *args]


def figures(kind: str, item_dir: Path) -> dict[str, Any]:
    """What the item's command measured, read from the files it wrote."""

    def read(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text()) if path.is_file() else {}

    if kind == "bench":
        bench = read(item_dir / "bench.json")
        return {key: bench.get(key) for key in BENCH_FIGURES} | {"device": bench.get("device")}
    if kind == "train":
        record = read(item_dir / "metrics.json")
        return {key: record.get(key) for key in TRAIN_FIGURES} | {"device": record.get("device")}
    if kind == "sweep":
        jobs = [read(path) for path in sorted(item_dir.glob("*/metrics.json"))]
        return {
            "jobs_completed": sum(job.get("status") == "completed" for job in jobs),
            "test_acc": [job.get("test_acc") for job in jobs],
            "cuda_visible_devices": [job.get("cuda_visible_devices") for job in jobs],
            "device": jobs[0].get("device") if jobs else None,
        }
    metrics = read(item_dir / "eval_metrics.json")
    return {key: metrics.get(key) for key in ("accuracy", "f1_macro", "ece", "images") if key in metrics}


def selected_items(suite: DictConfig, names: Any) -> list[DictConfig]:
    """The suite's items named in ``bench.items`` (all when null), in the suite's order."""
    items = list(suite["items"])
    if names is None:
        return items
    wanted = [str(name) for name in names]
    known = [str(item.name) for item in items]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(
            f"bench.items names {', '.join(map(repr, unknown))}, not in the suite; use: {', '.join(known)}"
        )
    return [item for item in items if str(item.name) in wanted]


def run_suite(cfg: DictConfig, config_dir: Path, output_dir: Path) -> list[dict[str, Any]]:
    """Run every item of ``cfg.suite`` in order; write suite.json and suite.md; return the entries."""
    import torch

    suite = load_suite(config_dir, str(cfg.suite))
    dry_run = bool(cfg.bench.get("dry_run"))
    gpu = torch.cuda.is_available()
    if not gpu and not dry_run:
        raise ConfigError(
            f"suite={cfg.suite} measures a GPU and this machine has none; bench.dry_run=true runs every item "
            "for a step or two here"
        )
    items = selected_items(suite, cfg.bench.get("items"))
    device = device_name(torch.device("cuda" if gpu else "cpu"))
    timeout = float(suite.get("timeout_s", 300))
    entries: list[dict[str, Any]] = []
    done: dict[str, Path] = {}  # item name -> what a later item reads (a run or sweep job directory)
    suite_start = time.perf_counter()
    for item in items:
        item_dir = output_dir / slug(str(item.name))
        command = item_command(item, item_dir, suite, done, dry_run, gpu)
        entry: dict[str, Any] = {"name": str(item.name), "kind": str(item.kind), "device": device}
        if command is None:
            entries.append({**entry, "command": None, "status": "skipped", "figures": {}, "seconds": 0.0})
            continue
        shown = shlex.join(["python", *command[1:]])
        print(f"[{len(entries) + 1}/{len(items)}] {item.name}: {shown}", flush=True)
        item_dir.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        log_path = output_dir / f"{slug(str(item.name))}.log"
        with log_path.open("w") as log_file:
            try:
                result = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout)
                status = "ok" if result.returncode == 0 else f"failed (exit {result.returncode})"
            except subprocess.TimeoutExpired:
                status = f"timeout ({timeout:.0f} s)"
        seconds = time.perf_counter() - start
        found = figures(str(item.kind), item_dir)
        entry.update(command=shown, status=status, figures=found, seconds=round(seconds, 1))
        entry["device"] = found.pop("device", None) or device
        entry["log"] = str(log_path.relative_to(output_dir))
        entries.append(entry)
        if status == "ok":
            done[str(item.name)] = first_job(item_dir) if item.kind == "sweep" else item_dir
        print(f"    {status} in {seconds:.1f} s: {format_figures(entry['figures'])}", flush=True)
    summary = {
        "suite": str(cfg.suite),
        "dry_run": dry_run,
        "device": device,
        "seconds": round(time.perf_counter() - suite_start, 1),
        "items": entries,
    }
    write_json_atomic(output_dir / "suite.json", summary)
    (output_dir / "suite.md").write_text(markdown_table(summary))
    failed = [e["name"] for e in entries if e["status"] != "ok"]
    print(
        f"suite {cfg.suite}: {len(entries) - len(failed)}/{len(entries)} items ok "
        f"in {summary['seconds']:.0f} s on {device}"
    )
    print(f"-> {output_dir / 'suite.json'}, {output_dir / 'suite.md'}")
    if failed:
        print(f"not ok: {', '.join(failed)} (their logs are beside suite.json)", file=sys.stderr)
    return entries


def format_figures(found: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.4g}" if abs(value) < 10 else f"{value:,.0f}"
        if isinstance(value, list):
            return "[" + ", ".join(fmt(v) for v in value) + "]"
        return str(value)

    return ", ".join(f"{key} {fmt(value)}" for key, value in found.items() if value is not None) or "-"


def markdown_table(summary: dict[str, Any]) -> str:
    """The suite as a table for docs/performance.md."""
    title = f"`python -m bench suite={summary['suite']}`" + (" (dry run)" if summary["dry_run"] else "")
    lines = [
        f"{title} on {summary['device']}, {summary['seconds']:.0f} s in all",
        "",
        "| item | status | figures | device | seconds | command |",
        "|---|---|---|---|---|---|",
    ]
    for entry in summary["items"]:
        command = f"`{entry['command']}`" if entry["command"] else "-"
        lines.append(
            f"| {entry['name']} | {entry['status']} | {format_figures(entry['figures'])} | {entry['device']} "
            f"| {entry['seconds']:.1f} | {command} |"
        )
    return "\n".join(lines) + "\n"


def first_job(sweep_dir: Path) -> Path:
    """Job 0 of a sweep: its folder is named by its number and overrides (``0_seed=0``)."""
    jobs = sorted(path for path in sweep_dir.glob("0*") if path.name.split("_", 1)[0] == "0")
    return jobs[0] if jobs else sweep_dir / "0"
