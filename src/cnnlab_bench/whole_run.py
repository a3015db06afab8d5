"""`python -m cnnlab_bench.whole_run`: one epoch end to end, `python -m train` against a hand-written script.

Both are timed as whole processes (imports, data, training, test, and for `python -m train` its
evaluation and figures) in one invocation, alternating which goes first, so a machine that slows
down during the comparison slows both. The figure per side is the fastest of ``--repeats`` runs;
the ratio is framework / script (below 1.0: the framework is faster).

    python -m cnnlab_bench.whole_run [--data mnist,fashion_mnist,cifar10] [--repeats 2]
        [--out outputs/whole_run] [train overrides ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab.runs.record import device_name, write_json_atomic


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {' / '.join(tail)}")
    return wall, done.stdout


def compare(
    dataset: str, repeats: int, out: Path, train_args: list[str], script_args: Sequence[str] = ()
) -> dict[str, Any]:
    """Best-of-``repeats`` walls of both sides on one dataset, with their accuracies."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    framework: list[float] = []
    script: list[float] = []
    accuracies: dict[str, float | None] = {}
    for repeat in range(repeats):
        run_dir = out / f"{dataset}-{repeat}"
        train = [sys.executable, "-m", "train", "model=smallcnn", f"data={dataset}", "trainer.max_epochs=1"]
        train += [f"hydra.run.dir={run_dir}", *train_args]
        plain = [sys.executable, "-m", "cnnlab_bench.plain_script", f"--data={dataset}", *script_args]
        order = [("framework", train), ("script", plain)]
        for side, command in order if repeat % 2 == 0 else order[::-1]:
            wall, stdout = _timed(command, env)
            print(f"{dataset}, {side}, run {repeat + 1} of {repeats}: {wall:.1f} s", flush=True)
            if side == "framework":
                framework.append(wall)
                accuracies["framework_test_acc"] = json.loads((run_dir / "metrics.json").read_text())[
                    "test_acc"
                ]
            else:
                script.append(wall)
                accuracies["script_test_acc"] = json.loads(stdout.strip().splitlines()[-1])["test_acc"]
    return {
        "dataset": dataset,
        "framework_wall_s": [round(w, 1) for w in framework],
        "script_wall_s": [round(w, 1) for w in script],
        "ratio": round(min(framework) / min(script), 3),
        **accuracies,
        "framework_command": "python -m train model=smallcnn data=" + dataset + " trainer.max_epochs=1",
        "script_command": f"python -m cnnlab_bench.plain_script --data={dataset}",
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | `python -m train` (s) | plain script (s) | ratio | test acc (train / script) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['dataset']} | {min(r['framework_wall_s']):.1f} | {min(r['script_wall_s']):.1f} | "
            f"**{r['ratio']:.2f}** | {r['framework_test_acc']:.4f} / {r['script_test_acc']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m cnnlab_bench.whole_run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", default="mnist,fashion_mnist,cifar10", help="comma-separated datasets")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side; the fastest counts")
    parser.add_argument("--out", default="outputs/whole_run", help="run directories and whole_run.json")
    parser.add_argument(
        "train_args", nargs="*", help="extra overrides for python -m train (e.g. data.root=...)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out} already holds files; pass another --out")
    try:
        results = [compare(name, args.repeats, out, args.train_args) for name in args.data.split(",")]
    except RuntimeError as failed:  # one side's command failed: its last lines say why
        parser.exit(2, f"error: {failed}\n")
    import torch

    write_json_atomic(
        out / "whole_run.json",
        {"device": device_name(torch.device("cpu")), "repeats": args.repeats, "results": results},
    )
    print(table(results))
    return results


if __name__ == "__main__":
    main()
