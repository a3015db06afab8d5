"""What defines a run: the one policy on which settings change what a run computes.

Every setting is in one category. A run is defined by its *configuration* and its *replicate* (which
seed, which cross-validation fold); the other categories say where it read and wrote, how the machine
ran it, what it logged, or how it was started, and two runs that differ only in those computed the
same thing. Results rows, the HParams columns, the resume checks, the reference doc's commands, sweep
folder names (``conf/hydra/default.yaml``, tied to this module by ``tests/test_identity.py``) and the
benchmark suites all read this module. It imports nothing heavy: Hydra's start-up and ``python -m
results`` use it without torch.

A category lists config subtrees: ``logger`` is the group choice ``logger=csv`` and every key below it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Category(str, Enum):
    """What a setting does to a run."""

    CONFIGURATION = "configuration"  # what is trained and tested: a results row, a comparison
    REPLICATE = "replicate"  # which repeat of one configuration: averaged within a results row
    LOCATION = "location"  # where the run reads and writes, and how Hydra launches it
    EXECUTION = "execution"  # how the machine runs it; by design the same numbers
    REPORTING = "reporting"  # what it logs, shows or analyses after the fact
    CONTINUATION = "continuation"  # how it was started or continued after an interruption


REPLICATE = ("seed", "data.fold")
LOCATION = (
    "hydra",
    "paths",
    "data.root",
    # downloading fills the data root; the files read are the same
    "data.download",
    # a folder dataset's decoded-image cache, and where its run keeps the split it drew (split.csv)
    "data.cache_dir",
    "data.split_file",
    "trainer.default_root_dir",
)
EXECUTION = (
    # the DataLoader path seeds each image's augmentation from (seed, epoch, index), whichever worker
    # takes it (docs/runs.md), and the tensor path has no workers
    "data.num_workers",
    "data.pin_memory",
    # deterministic kernels make reruns reproduce bit for bit; they compute the same arithmetic, and a
    # non-deterministic run has no fixed numbers to differ from, so both are repeats of one configuration
    "deterministic",
    "trainer.deterministic",
    # cuDNN autotuning picks among kernels of the same arithmetic by their speed
    "trainer.benchmark",
)
REPORTING = (
    # loggers write the curves; the metrics in the run record do not depend on them
    "logger",
    # the analysis into eval/ runs after the record is written, from the tested checkpoint
    "evaluate",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "callbacks.progress_bar",
    "callbacks.remaining_time",
    "callbacks.model_summary",
    "callbacks.learning_rate_monitor",
    "callbacks.throughput",
    "callbacks.flush_logs",
)
CONTINUATION = (
    "resume",
    "ckpt_path",
    # checkpoints hold the random states: a run resumed from one ends as the uninterrupted run does
    "callbacks.step_checkpoint",
    "callbacks.preemption",
)
SUBTREES = {
    Category.REPLICATE: REPLICATE,
    Category.LOCATION: LOCATION,
    Category.EXECUTION: EXECUTION,
    Category.REPORTING: REPORTING,
    Category.CONTINUATION: CONTINUATION,
}


def override_key(override: str) -> str:
    """The setting an override sets: ``+trainer.x=1`` -> ``trainer.x``, ``hydra/launcher=joblib`` ->
    ``hydra.launcher``."""
    return override.split("=", 1)[0].lstrip("+~").replace("/", ".")


def category(key: str) -> Category:
    """The category of a dotted config key (or an override's key); configuration unless listed."""
    key = override_key(key)
    for found, subtrees in SUBTREES.items():
        if any(key == subtree or key.startswith(f"{subtree}.") for subtree in subtrees):
            return found
    return Category.CONFIGURATION


def defines_the_run(key: str) -> bool:
    """Whether the setting changes what the run computes: its configuration or its replicate."""
    return category(key) in (Category.CONFIGURATION, Category.REPLICATE)


def is_replicate(key: str) -> bool:
    """Whether the setting picks a repeat of one configuration (seed, cross-validation fold)."""
    return category(key) is Category.REPLICATE


def run_overrides(overrides: Iterable[str]) -> list[str]:
    """The overrides that define the run (configuration and replicate), in their order."""
    return [str(o) for o in overrides if defines_the_run(str(o))]


def configuration_overrides(overrides: Iterable[str]) -> list[str]:
    """The overrides that define the configuration: a run's, less its seed and fold, in their order."""
    return [o for o in run_overrides(overrides) if not is_replicate(o)]


def sweep_folder_excluded_keys(config_keys: Iterable[str]) -> list[str]:
    """What ``conf/hydra/default.yaml`` must list as ``override_dirname.exclude_keys``, for a config
    with these dotted keys: Hydra drops an override from a sweep job's folder name only when its key is
    listed exactly, so each subtree that does not define the run is listed by its own name (the group
    choice ``logger=csv``, ``callbacks.progress_bar=null``) and by the settings under it. ``hydra.*``
    needs none: Hydra keeps its own overrides out of the folder names; nor do ``_target_``s, which
    name code rather than settings."""
    subtrees = [name for kind, names in SUBTREES.items() if kind is not Category.REPLICATE for name in names]
    keys = {s for s in subtrees if s != "hydra"}
    keys |= {
        key
        for key in config_keys
        if not defines_the_run(key) and not key.startswith("hydra.") and not key.endswith("._target_")
    }
    return sorted(keys, key=lambda key: (list(Category).index(category(key)), key))


def comparable_overrides(overrides: Iterable[str], ignoring: Iterable[str] = ()) -> list[str]:
    """The run's defining overrides, sorted, without the ``ignoring`` keys: equal lists, the same run."""
    ignored = {override_key(key) for key in ignoring}
    return sorted(o for o in run_overrides(overrides) if override_key(o) not in ignored)
