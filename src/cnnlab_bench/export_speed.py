"""Images/s of an exported classifier in onnxruntime and TorchScript against PyTorch eager, on the CPU.

    python -m cnnlab_bench.export_speed docs/runs/smallcnn-cifar10-seed0 docs/runs/smallvgg-cifar10-seed0

Each run is exported (fp32, checked) into a temporary folder, then every engine classifies the same
normalised random batches on ``--threads`` threads. A figure is the best of ``--rounds`` rounds of at
least ``--seconds`` each, the engines taking turns within a round: on a shared machine the best round
is the one least slowed by other work, and taking turns spreads that work over all engines.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from cnnlab.analysis.checkpoints import load_trained_model
from cnnlab.analysis.export import INPUT_NAME, OUTPUT_NAME, export_checkpoint, runner_of


def images_per_second(run: Callable[[], object], batch: int, seconds: float) -> float:
    """The rate of one timed round of at least ``seconds`` and two calls."""
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 2:
        run()
        calls += 1
    return calls * batch / elapsed


def engines(
    ckpt: str, net: nn.Module, folder: Path, threads: int
) -> dict[str, Callable[[np.ndarray], object]]:
    """PyTorch eager (``net``, loaded from ``ckpt``), onnxruntime and TorchScript, each on ``threads``
    threads: float32 array -> logits."""
    net.eval()
    paths = {}
    for format, suffix in (("onnx", ".onnx"), ("torchscript", ".pt")):
        paths[format] = folder / f"{Path(ckpt).name}{suffix}"
        export_checkpoint(ckpt, format, paths[format], check_images=1000)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(paths["onnx"]), options, providers=["CPUExecutionProvider"])
    scripted = runner_of("torchscript", paths["torchscript"])

    def eager(x: np.ndarray) -> object:
        with torch.inference_mode():
            return net(torch.from_numpy(x))

    def torchscript(x: np.ndarray) -> object:
        with torch.inference_mode():
            return scripted(torch.from_numpy(x))

    return {
        "PyTorch eager": eager,
        "onnxruntime": lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x}),
        "TorchScript": torchscript,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories or .ckpt files")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for ckpt in args.runs:
            model = load_trained_model(ckpt)
            shape = model.datamodule.shape
            runners = engines(ckpt, model.net, Path(folder), args.threads)
            for batch in args.batches:
                x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
                for engine in runners.values():
                    engine(x)  # untimed: first-call allocations and graph optimisation
                best = dict.fromkeys(runners, 0.0)
                for _ in range(args.rounds):
                    for name, engine in runners.items():
                        rate = images_per_second(lambda e=engine, x=x: e(x), batch, args.seconds)
                        best[name] = max(best[name], rate)
                for name, rate in best.items():
                    rows.append((model.model_name, name, batch, rate))
                    print(f"{model.model_name:10} {name:14} batch {batch:4}: {rate:9.1f} images/s")
    print("\n| model | engine | " + " | ".join(f"batch {b} (images/s)" for b in args.batches) + " |")
    print("|---|---|" + "---:|" * len(args.batches))
    for model_name in dict.fromkeys(r[0] for r in rows):
        for engine in dict.fromkeys(r[1] for r in rows):
            rates = [f"{r[3]:.0f}" for r in rows if r[0] == model_name and r[1] == engine]
            print(f"| {model_name} | {engine} | " + " | ".join(rates) + " |")


if __name__ == "__main__":
    main()
