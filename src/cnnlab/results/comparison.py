"""`python -m results --baseline KEY=VALUE`: every row of the results table against one baseline row.

Per compared metric: the difference of means, its Welch–Satterthwaite 95 % interval, Welch's p-value,
the paired t-test where both rows ran the same seeds / folds, Holm's correction over the table's
comparisons, and a verdict in words.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from cnnlab.errors import ConfigError
from cnnlab.results.rows import MEMBERS, Run, short_labels
from cnnlab.results.statistics import ALPHA, holm, paired_test, verdict, welch_test

# what the verdict reads: Welch's t-test, or the paired one where a row ran the baseline's seeds
TESTS = ("welch", "paired")

# the compared metrics -> the suffix of their comparison columns (test_acc keeps the plain names)
COMPARED = {"test_acc": "", "test_f1_macro": "_f1"}
TITLES = {"test_acc": "test top-1", "test_f1_macro": "macro-F1"}


def parse_baseline(items: Sequence[str]) -> dict[str, str]:
    """``["model=smallcnn", "model.batch_norm=true"]`` -> {key: value}; every pair must hold."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--baseline {item}: use KEY=VALUE, e.g. --baseline model.batch_norm=true")
        pairs[key.strip()] = value.strip()
    return pairs


@functools.lru_cache(maxsize=4096)
def _saved(run_dir: Path, name: str) -> Any:
    path = run_dir / ".hydra" / name
    try:
        return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}
    except Exception:  # an unreadable config must not hide the run: the key is then unknown
        return {}


def _select(tree: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def run_value(run: Run, key: str) -> Any:
    """The run's value of ``key``: its override, else its group choice, resolved config or record field."""
    for override in reversed(run.record.get("overrides") or []):
        name, sep, value = override.lstrip("+~").partition("=")
        if sep and name == key:
            return value
    choices = _select(_saved(run.path.resolve(), "hydra.yaml"), "hydra.runtime.choices") or {}
    if key in choices:
        return choices[key]
    value = _select(_saved(run.path.resolve(), "config.yaml"), key)
    if value is not None and not isinstance(value, (dict, list)):
        return value
    return run.record.get("dataset" if key == "data" else key)


def _parsed(value: Any) -> Any:
    """A command-line value as YAML reads it, so that `true` equals True and `0.10` equals 0.1."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _matches(run: Run, wanted: dict[str, str]) -> bool:
    return all(_parsed(run_value(run, key)) == _parsed(value) for key, value in wanted.items())


def _row_settings(row: dict[str, Any]) -> dict[str, set[str]]:
    settings: dict[str, set[str]] = {}
    for run in row[MEMBERS]:
        for override in run.defining_overrides:
            key, _, value = override.lstrip("+~").partition("=")
            settings.setdefault(key, set()).add(value)
        for name in ("model", "dataset"):
            settings.setdefault("data" if name == "dataset" else name, set()).add(str(run.field(name)))
    return settings


def distinguishing_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The keys whose values differ between rows (or that some rows set and others leave at default)."""
    settings = [_row_settings(row) for row in rows]
    keys = sorted({key for row in settings for key in row})
    return [key for key in keys if len({frozenset(row.get(key, ())) for row in settings}) > 1]


def find_baseline(rows: Sequence[dict[str, Any]], wanted: dict[str, str]) -> int:
    """The index of the one row whose runs all match ``wanted``; a ConfigError for none or several."""
    matching = [i for i, row in enumerate(rows) if all(_matches(run, wanted) for run in row[MEMBERS])]
    if len(matching) == 1:
        return matching[0]
    asked = " ".join(f"{key}={value}" for key, value in wanted.items())
    keys = distinguishing_keys([rows[i] for i in matching] if matching else rows)
    apart = f"the rows differ in {', '.join(keys)}" if keys else "no override tells the rows apart"
    found = "matches no row" if not matching else f"matches {len(matching)} rows"
    more = "; add another --baseline KEY=VALUE to pick one" if matching else ""
    raise ConfigError(f"--baseline {asked} {found}: {apart}{more}")


def _pair_key(run: Run) -> tuple[Any, Any]:
    return run.record.get("seed"), run.record.get("fold")


def _samples(row: dict[str, Any], metric: str) -> dict[tuple[Any, Any], float] | list[float]:
    """The row's finite values of ``metric``: keyed by (seed, fold) when those are unique, else a list."""
    keyed = [
        (_pair_key(run), float(run.record[metric]))
        for run in row[MEMBERS]
        if isinstance(run.record.get(metric), (int, float)) and math.isfinite(run.record[metric])
    ]
    keys = [key for key, _ in keyed]
    return dict(keyed) if len(set(keys)) == len(keys) else [value for _, value in keyed]


def _values(samples: dict | list) -> list[float]:
    return list(samples.values()) if isinstance(samples, dict) else samples


def _compare(row_samples: dict | list, base_samples: dict | list, test: str) -> dict[str, Any]:
    """One row against the baseline on one metric, before the Holm adjustment."""
    row_values, base_values = _values(row_samples), _values(base_samples)
    result: dict[str, Any] = {"n": len(row_values), "base_n": len(base_values)}
    if not row_values or not base_values:
        return {**result, "reason": "no test: no value of this metric"}
    result["delta"] = sum(row_values) / len(row_values) - sum(base_values) / len(base_values)
    welch = welch_test(row_values, base_values)
    if welch is not None:
        result.update(ci_low=welch.ci_low, ci_high=welch.ci_high, p_welch=welch.p_value, df=welch.df)
    shared = (
        isinstance(row_samples, dict)
        and isinstance(base_samples, dict)
        and row_samples.keys() == base_samples.keys()
    )
    paired = None
    if shared:
        keys = sorted(row_samples, key=str)
        paired = paired_test([row_samples[k] for k in keys], [base_samples[k] for k in keys])
    if paired is not None:
        result.update(paired_ci_low=paired.ci_low, paired_ci_high=paired.ci_high, p_paired=paired.p_value)
    if paired is not None and test == "paired":
        result["p"], result["test"] = paired.p_value, f"paired t ({len(row_samples)} shared seeds/folds)"
    elif welch is not None:
        result["p"], result["test"] = welch.p_value, f"Welch t (df {welch.df:.1f})"
    elif len(row_values) < 2:
        result["reason"] = f"no test: {len(row_values)} run, a spread needs 2 or more (add seeds)"
    elif len(base_values) < 2:
        result["reason"] = f"no test: the baseline has {len(base_values)} run (add seeds)"
    else:
        result["reason"] = "no test: every run of both rows scored the same"
    return result


def compare_to_baseline(rows: list[dict[str, Any]], baseline: int, test: str = "welch") -> None:
    """Add the comparison columns to every row (in place); the baseline row gets its verdict "baseline".

    ``test="paired"`` bases the verdict on the paired t-test where a row ran the baseline's seeds.
    """
    if test not in TESTS:
        raise ConfigError(f"--test {test}: unknown; use one of {', '.join(TESTS)}")
    for metric, suffix in COMPARED.items():
        base_samples = _samples(rows[baseline], metric)
        results = [
            None if i == baseline else _compare(_samples(row, metric), base_samples, test)
            for i, row in enumerate(rows)
        ]
        adjusted = holm([r.get("p") if r else None for r in results])  # one family per metric
        for row, result, p_holm in zip(rows, results, adjusted, strict=True):
            row[f"delta_{metric}"] = result.get("delta") if result else 0.0
            row[f"delta{suffix}_ci95_low"] = result.get("ci_low") if result else None
            row[f"delta{suffix}_ci95_high"] = result.get("ci_high") if result else None
            row[f"p_value{suffix}"] = result.get("p_welch") if result else None
            row[f"p_paired{suffix}"] = result.get("p_paired") if result else None
            row[f"paired{suffix}_ci95_low"] = result.get("paired_ci_low") if result else None
            row[f"paired{suffix}_ci95_high"] = result.get("paired_ci_high") if result else None
            row[f"test{suffix}"] = (result.get("test") or "") if result else ""
            row[f"p_holm{suffix}"] = p_holm
            if result is None:
                row[f"verdict{suffix}"] = "baseline"
            elif p_holm is None:
                row[f"verdict{suffix}"] = result["reason"]
            else:
                row[f"verdict{suffix}"] = verdict(result["delta"], p_holm, result["n"], result["base_n"])
        tested = sum(p is not None for p in adjusted)
        rows[baseline][f"comparisons{suffix}"] = tested


def _number(value: float | None, digits: int = 4, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2g}" if value >= 0.001 else "<0.001"


def _interval(low: float | None, high: float | None) -> str:
    return "–" if low is None else f"[{_number(low, signed=True)}, {_number(high, signed=True)}]"


def markdown(
    rows: Sequence[dict[str, Any]], baseline: int, wanted: dict[str, str], test: str = "welch"
) -> str:
    """One table per compared metric: each row's mean and 95 % CI, its difference from the baseline,
    the tests and the verdict; then how to read them."""
    asked = " ".join(f"{key}={value}" for key, value in wanted.items())
    order = [baseline, *(i for i in range(len(rows)) if i != baseline)]
    labels, shared = short_labels(rows)
    text = f"\n## Against the baseline `{asked}`\n"
    text += f"\nAll rows: `{shared}`.\n" if shared else ""
    for metric, suffix in COMPARED.items():
        title = TITLES[metric]
        header = [
            "row",
            "runs",
            f"{title} [95 % CI]",
            "Δ [95 % CI, Welch]",
            "p Welch",
            "Δ [95 % CI, paired]",
            "p paired",
            "test used",
            "p Holm",
            "verdict",
        ]
        lines = [f"\n### {title}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for i in order:
            row = rows[i]
            mean, low, high = (row[f"{metric}_{part}"] for part in ("mean", "ci95_low", "ci95_high"))
            own = _number(mean) + (f" [{_number(low)}, {_number(high)}]" if low is not None else "")
            delta = row[f"delta_{metric}"]
            d_low, d_high = row[f"delta{suffix}_ci95_low"], row[f"delta{suffix}_ci95_high"]
            change = "–" if i == baseline else _number(delta, signed=True)
            if d_low is not None:
                change += f" [{_number(d_low, signed=True)}, {_number(d_high, signed=True)}]"
            cells = [
                ("**baseline** " if i == baseline else "") + f"`{labels[i]}`",
                str(row[f"{metric}_runs"]),
                own,
                change,
                _p(row[f"p_value{suffix}"]),
                _interval(row[f"paired{suffix}_ci95_low"], row[f"paired{suffix}_ci95_high"]),
                _p(row[f"p_paired{suffix}"]),
                row[f"test{suffix}"] or "–",
                _p(row[f"p_holm{suffix}"]),
                row[f"verdict{suffix}"],
            ]
            lines.append("| " + " | ".join(cells) + " |")
        text += "\n".join(lines) + "\n"
    comparisons = rows[baseline]["comparisons"]
    used = (
        "the paired t-test where both rows ran the same seeds (or folds), else Welch's"
        if test == "paired"
        else "Welch's t-test (--test paired: the paired one where the seeds match)"
    )
    plural = "s" if comparisons != 1 else ""
    text += (
        "\nΔ = row mean − baseline mean. [95 % CI]: the t-interval of the row's mean; for Δ the "
        "Welch–Satterthwaite interval (and the paired one where the rows share seeds). The verdict reads "
        f"{used}, Holm-adjusted over the {comparisons} comparison{plural} of each metric (family-wise "
        f'α = {ALPHA}). "No detectable difference" is not "equal": with n runs per row, smaller effects '
        "than the interval's width go unseen.\n"
    )
    return text
