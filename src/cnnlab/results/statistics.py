"""Small-sample statistics for comparing configurations over a few seeds (or folds).

t-based confidence intervals of a mean, Welch's and the paired t-test of a difference of means
(scipy.stats), Holm's step-down correction for a family of comparisons, and the verdict in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05  # family-wise error rate of a table's comparisons (after Holm)
# a spread below this is rounding (0.9 - 0.8 != 0.8 - 0.7 in floats), not variation between runs
NO_SPREAD = 1e-12


def _flat(values: np.ndarray) -> bool:
    return values.size == 0 or float(np.ptp(values)) <= NO_SPREAD


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The t-interval of the mean of ``values``; None for fewer than two values (no spread to estimate)."""
    sample = np.asarray(values, dtype=float)
    if sample.size < 2:
        return None
    mean, sem = float(sample.mean()), float(stats.sem(sample))
    if _flat(sample):  # identical values: the interval collapses (scipy would give nan)
        return mean, mean
    low, high = stats.t.interval(confidence, sample.size - 1, loc=mean, scale=sem)
    return float(low), float(high)


@dataclass(frozen=True)
class TTest:
    """A t-test of mean(a) - mean(b): the difference, its confidence interval, p-value and df."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    df: float


def _finite(result: TTest) -> TTest | None:
    return result if math.isfinite(result.p_value) else None


def welch_test(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> TTest | None:
    """Welch's unequal-variance t-test of mean(a) - mean(b), with the Welch–Satterthwaite interval.

    None when it is undefined: fewer than two values on a side, or no spread on either side.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2 or (_flat(a) and _flat(b)):
        return None
    result = stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(confidence)
    return _finite(
        TTest(
            float(a.mean() - b.mean()),
            float(interval.low),
            float(interval.high),
            float(result.pvalue),
            float(result.df),
        )
    )


def paired_test(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> TTest | None:
    """The paired t-test of mean(a - b) (a[i] and b[i] share a seed / fold); None when undefined."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} and {b.size}")
    if a.size < 2 or _flat(a - b):  # constant differences: no spread, no test
        return None
    result = stats.ttest_rel(a, b)
    interval = result.confidence_interval(confidence)
    return _finite(
        TTest(
            float((a - b).mean()),
            float(interval.low),
            float(interval.high),
            float(result.pvalue),
            float(result.df),
        )
    )


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error control); None entries are left out.

    scipy has no Holm (``false_discovery_control`` is Benjamini–Hochberg, which controls the false
    discovery rate, not the chance of any false "better" in the table); the adjustment is three lines.
    """
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (len(tested) - rank) * p))  # monotone in the sorted order
        adjusted[index] = running
    return adjusted


def verdict(delta: float, p_adjusted: float, runs: int, baseline_runs: int, alpha: float = ALPHA) -> str:
    """Better or worse when the adjusted p-value is below ``alpha``, else "no detectable difference"."""
    if p_adjusted < alpha:
        return "better" if delta > 0 else "worse"
    sizes = f"n={runs}" if runs == baseline_runs else f"n={runs} vs {baseline_runs}"
    return f"no detectable difference at {sizes}"
