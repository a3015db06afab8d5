"""Throughput benchmark of one configuration: training and inference images/s, framework overhead
(a plain PyTorch loop vs the Lightning path on the same model, data tensors, optimizer and steps),
DataLoader vs device-resident data path, peak memory and, optionally, time to a target accuracy.
"""

from __future__ import annotations

import copy
import logging
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, open_dict
from torch import nn

from cnnlab.analysis.inference import autocast
from cnnlab.callbacks.throughput import synchronize
from cnnlab.data import ImageDataModule
from cnnlab.errors import ConfigError
from cnnlab.models.build import instantiate_model
from cnnlab.runs.console import quiet_library_noise
from cnnlab.runs.record import device_name, write_json_atomic
from cnnlab.training.build import build_module
from cnnlab.training.precision import resolve_precision

log = logging.getLogger(__name__)


def _device(cfg: DictConfig) -> torch.device:
    accelerator = cfg.trainer.get("accelerator", "auto")
    use_cuda = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    return torch.device("cuda" if use_cuda else "cpu")


def _batches(loader: Any, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (uint8 images, labels) batches on ``device``."""
    while True:
        for images, labels in loader:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


class StepTimer(Callback):
    """Wall time of training steps ``warmup`` .. ``warmup + steps`` inside a Lightning fit."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start = self.elapsed = 0.0
        self.images = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and not self.start:
            synchronize(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.start and not self.elapsed:
            self.images += len(batch[0])
        if trainer.global_step == self.warmup + self.steps and not self.elapsed:
            synchronize(pl_module.device)
            self.elapsed = time.perf_counter() - self.start


class TimeToAccuracy(Callback):
    """Stop training when validation accuracy first reaches ``target``; remember when."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.start = 0.0
        self.seconds: float | None = None
        self.epoch: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        accuracy = trainer.callback_metrics.get("val/acc")
        if self.seconds is None and accuracy is not None and float(accuracy) >= self.target:
            self.seconds = time.perf_counter() - self.start
            self.epoch = trainer.current_epoch + 1
            trainer.should_stop = True


class Benchmark:
    """Builds fresh, identically initialised copies of the configured model and data for each measurement."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.bench = cfg.bench
        self.device = _device(cfg)
        # what a run with these settings uses: bf16 autocast on a CPU too when asked (AMX makes it fast)
        self.precision = str(resolve_precision(cfg.trainer))
        self.steps, self.warmup = int(self.bench.steps), int(self.bench.warmup)
        self.repeats = int(self.bench.get("repeats", 1))
        if self.steps < 1 or self.warmup < 0 or self.repeats < 1:
            raise ConfigError("bench.steps and bench.repeats must be >= 1 and bench.warmup >= 0")

    def datamodule(self, loader: str) -> ImageDataModule:
        data_cfg = copy.deepcopy(self.cfg.data)
        with open_dict(data_cfg):
            data_cfg.loader = loader
        datamodule: ImageDataModule = instantiate(data_cfg)
        datamodule.setup("fit")
        return datamodule

    def module(self, datamodule: ImageDataModule) -> L.LightningModule:
        L.seed_everything(self.cfg.seed, workers=True)
        net = instantiate_model(self.cfg)
        if not isinstance(net, nn.Module):
            raise ConfigError(
                "python -m bench measures neural models; the classical baselines time themselves"
            )
        return build_module(self.cfg, net, datamodule)

    def trainer(self, max_steps: int, callbacks: list[Callback], **overrides: Any) -> L.Trainer:
        options = {
            "accelerator": "gpu" if self.device.type == "cuda" else "cpu",
            "devices": 1,
            "precision": self.precision,
            "max_steps": max_steps,
            "max_epochs": -1,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
            "benchmark": self.cfg.trainer.get("benchmark"),
            "callbacks": callbacks,
            **overrides,
        }
        return L.Trainer(**options)

    def lightning_train(self, loader: str) -> dict[str, float]:
        """Training images/s through the Lightning path with the given data path."""
        datamodule = self.datamodule(loader)
        timer = StepTimer(self.warmup, self.steps)
        self.trainer(self.warmup + self.steps, [timer]).fit(self.module(datamodule), datamodule=datamodule)
        return {
            "seconds": timer.elapsed,
            "images": timer.images,
            "images_per_s": timer.images / timer.elapsed,
        }

    def plain_train(self) -> dict[str, float]:
        """The same steps as a hand-written loop: same model, tensors, optimizer, schedule, precision."""
        datamodule = self.datamodule("tensor")
        module = self.module(datamodule).to(self.device)
        loader = datamodule.device_batches(datamodule.train_set, train=True, device=self.device)
        optimizer = module.make_optimizer()
        total = self.warmup + self.steps
        scheduler = (
            module.scheduler_factory(optimizer, total_steps=total) if module.scheduler_factory else None
        )
        criterion = module.criterion
        batches = _batches(loader, self.device)
        module.train()
        images_seen, start = 0, 0.0
        for step in range(total):
            if step == self.warmup:
                synchronize(self.device)
                start = time.perf_counter()
            images, labels = next(batches)
            with autocast(self.device, self.precision):
                loss = criterion(module(datamodule.normalize(images)), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if step >= self.warmup:
                images_seen += len(labels)
        synchronize(self.device)
        elapsed = time.perf_counter() - start
        return {"seconds": elapsed, "images": images_seen, "images_per_s": images_seen / elapsed}

    def inference(self) -> dict[str, float]:
        """Eval-mode forward passes over one batch of training images (the test set stays untouched)."""
        datamodule = self.datamodule("tensor")
        module = self.module(datamodule).to(self.device).eval()
        images = datamodule.train_set.split.images[: datamodule.batch_size]
        batch = datamodule.normalize(images.to(self.device))
        with torch.inference_mode(), autocast(self.device, self.precision):
            for _ in range(self.warmup):
                module(batch)
            synchronize(self.device)
            start = time.perf_counter()
            for _ in range(self.steps):
                module(batch)
            synchronize(self.device)
        elapsed = time.perf_counter() - start
        return {"images_per_s": self.steps * len(batch) / elapsed}

    def time_to_accuracy(self, target: float) -> dict[str, Any]:
        """A real training run with validation every epoch, stopped at the first epoch reaching ``target``."""
        datamodule = instantiate(self.cfg.data)
        if not datamodule.has_validation:
            raise ConfigError("bench.time_to_acc needs a validation split: set data.val_size > 0")
        stopper = TimeToAccuracy(target)
        trainer = self.trainer(-1, [stopper], max_epochs=self.cfg.trainer.max_epochs, limit_val_batches=None)
        start = time.perf_counter()
        trainer.fit(self.module(datamodule), datamodule=datamodule)
        return {
            "target": target,
            "seconds": stopper.seconds,
            "epoch": stopper.epoch,
            "reached": stopper.seconds is not None,
            "total_seconds": time.perf_counter() - start,
        }

    def peak_memory_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kilobytes / 1024 if sys.platform != "darwin" else kilobytes / 2**20


def run_benchmark(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Measure everything, print the table, write bench.json; return the results."""
    quiet_library_noise()
    bench = Benchmark(cfg)
    if bench.device.type == "cuda":
        torch.set_float32_matmul_precision("high")
        torch.cuda.reset_peak_memory_stats(bench.device)
    loader = cfg.data.get("loader", "torch")
    # interleaved rounds, best of each: the figure least disturbed by whatever else the machine did
    rounds: dict[str, list[dict[str, float]]] = {"plain": [], "tensor": [], "torch": []}
    for _ in range(bench.repeats):
        rounds["plain"].append(bench.plain_train())
        rounds["tensor"].append(bench.lightning_train("tensor"))
        rounds["torch"].append(bench.lightning_train("torch"))
    plain, lightning_tensor, lightning_torch = (
        max(rounds[name], key=lambda r: r["images_per_s"]) for name in ("plain", "tensor", "torch")
    )
    inference = bench.inference()
    configured = lightning_tensor if loader == "tensor" else lightning_torch
    train_images = len(bench.datamodule("torch").train_set)
    results: dict[str, Any] = {
        "model": cfg.bench.get("model_name"),
        "dataset": cfg.data.name,
        "loader": loader,
        "precision": bench.precision,
        "batch_size": cfg.data.batch_size,
        "device": device_name(bench.device),
        "cpu_threads": torch.get_num_threads(),
        "steps": bench.steps,
        "warmup_steps": bench.warmup,
        "repeats": bench.repeats,
        "train_images_per_s": configured["images_per_s"],
        "inference_images_per_s": inference["images_per_s"],
        "epoch_time_s": train_images / configured["images_per_s"],
        "plain_loop_images_per_s": plain["images_per_s"],
        "lightning_images_per_s": lightning_tensor["images_per_s"],
        "overhead_ratio": plain["images_per_s"] / lightning_tensor["images_per_s"],
        # the same gap as time per optimizer step: what the framework adds to every step
        "overhead_ms_per_step": 1000
        * cfg.data.batch_size
        * (1 / lightning_tensor["images_per_s"] - 1 / plain["images_per_s"]),
        "dataloader_images_per_s": lightning_torch["images_per_s"],
        "tensor_loader_images_per_s": lightning_tensor["images_per_s"],
        "tensor_vs_dataloader": lightning_tensor["images_per_s"] / lightning_torch["images_per_s"],
        "num_workers": bench.datamodule("torch").num_workers,
        "peak_memory_mb": bench.peak_memory_mb(),
        "time_to_acc": None,
    }
    if cfg.bench.get("time_to_acc") is not None:
        results["time_to_acc"] = bench.time_to_accuracy(float(cfg.bench.time_to_acc))
    write_json_atomic(output_dir / "bench.json", results)
    print(format_table(results))
    print(f"-> {output_dir / 'bench.json'}")
    return results


def format_table(results: dict[str, Any]) -> str:
    """A plain-text table of the headline figures."""
    rows = [
        (
            "configuration",
            f"{results['model']} on {results['dataset']}, batch {results['batch_size']}, "
            f"{results['precision']}, loader={results['loader']}, {results['device']}",
        ),
        ("train images/s", f"{results['train_images_per_s']:,.0f}"),
        ("inference images/s", f"{results['inference_images_per_s']:,.0f}"),
        ("epoch time (from train images/s)", f"{results['epoch_time_s']:.1f} s"),
        ("plain PyTorch loop images/s", f"{results['plain_loop_images_per_s']:,.0f}"),
        ("Lightning path images/s", f"{results['lightning_images_per_s']:,.0f}"),
        ("framework overhead (plain / Lightning)", f"{results['overhead_ratio']:.3f}"),
        ("framework time per step", f"{results['overhead_ms_per_step']:+.2f} ms"),
        (
            f"DataLoader images/s ({results['num_workers']} workers)",
            f"{results['dataloader_images_per_s']:,.0f}",
        ),
        ("device-resident images/s", f"{results['tensor_loader_images_per_s']:,.0f}"),
        ("device-resident / DataLoader", f"{results['tensor_vs_dataloader']:.2f}x"),
        ("peak memory", f"{results['peak_memory_mb']:,.0f} MB"),
    ]
    reached = results.get("time_to_acc")
    if reached:
        value = (
            f"{reached['seconds']:.1f} s (epoch {reached['epoch']})"
            if reached["reached"]
            else f"not reached in {reached['total_seconds']:.1f} s"
        )
        rows.append((f"time to {reached['target']:.1%} val acc", value))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
