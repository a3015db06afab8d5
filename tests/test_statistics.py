"""The comparison statistics against textbook formulas computed here with scipy.stats on hand-made numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from cnnlab.results.statistics import holm, mean_ci, paired_test, verdict, welch_test

BN = [0.842, 0.851, 0.838]  # hand-made accuracies of three seeds
NO_BN = [0.801, 0.823, 0.779]


def test_mean_ci_is_the_t_interval_of_the_mean() -> None:
    values = np.array(BN)
    half = stats.t.ppf(0.975, df=2) * values.std(ddof=1) / np.sqrt(3)
    low, high = mean_ci(BN)
    assert low == pytest.approx(values.mean() - half) and high == pytest.approx(values.mean() + half)
    assert mean_ci([0.9]) is None  # one run: no spread, no interval
    assert mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_welch_matches_the_welch_satterthwaite_formulas() -> None:
    a, b = np.array(NO_BN), np.array([0.842, 0.851, 0.838, 0.846, 0.840])
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    delta = a.mean() - b.mean()
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    p = 2 * stats.t.sf(abs(delta) / np.sqrt(va + vb), df)
    result = welch_test(a, b)
    assert result.delta == pytest.approx(delta) and result.df == pytest.approx(df)
    assert (result.ci_low, result.ci_high) == pytest.approx((delta - half, delta + half))
    assert result.p_value == pytest.approx(p)
    assert result.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_paired_test_is_the_one_sample_test_of_the_differences() -> None:
    differences = np.array(NO_BN) - np.array(BN)
    half = stats.t.ppf(0.975, 2) * differences.std(ddof=1) / np.sqrt(3)
    result = paired_test(NO_BN, BN)
    assert result.delta == pytest.approx(differences.mean()) and result.df == 2
    mean = differences.mean()
    assert (result.ci_low, result.ci_high) == pytest.approx((mean - half, mean + half))
    assert result.p_value == pytest.approx(stats.ttest_1samp(differences, 0.0).pvalue)


@pytest.mark.parametrize(
    ("a", "b"),
    [([0.8], [0.7, 0.9]), ([0.8, 0.8], [0.7, 0.7]), ([0.8, 0.9], [0.8])],
    ids=["one run", "no spread", "one baseline run"],
)
def test_undefined_tests_are_none(a: list[float], b: list[float]) -> None:
    assert welch_test(a, b) is None


def test_paired_test_needs_a_spread_of_differences() -> None:
    assert paired_test([0.8, 0.9], [0.7, 0.8]) is None  # every difference 0.1
    with pytest.raises(ValueError, match="differ in length"):
        paired_test([0.8, 0.9], [0.7])


def _holm_by_definition(p_values: list[float]) -> list[float]:
    """Adjusted p_i = max over the hypotheses ranked at or before i of min(1, (m - rank) * p)."""
    m = len(p_values)
    ranked = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    for position, index in enumerate(ranked):
        adjusted[index] = max(min(1.0, (m - r) * p_values[ranked[r]]) for r in range(position + 1))
    return adjusted


@pytest.mark.parametrize("p_values", [[0.01, 0.04, 0.03, 0.005], [0.2, 0.001, 0.5, 0.04, 0.049], [0.6]])
def test_holm_matches_its_definition(p_values: list[float]) -> None:
    assert holm(p_values) == pytest.approx(_holm_by_definition(p_values))


def test_holm_skips_untested_rows_and_controls_the_family() -> None:
    adjusted = holm([0.02, None, 0.03])
    assert adjusted[1] is None and adjusted == [pytest.approx(0.04), None, pytest.approx(0.04)]
    # the family-wise property: under the null, some adjusted p < 0.05 at most 5 % of the time
    rng = np.random.default_rng(0)
    rejections = sum(min(holm(list(rng.uniform(size=5)))) < 0.05 for _ in range(4000))
    assert rejections / 4000 <= 0.06
    assert all(a >= p for a, p in zip(holm([0.01, 0.2, 0.03]), [0.01, 0.2, 0.03], strict=True))


def test_verdict_in_words() -> None:
    assert verdict(0.02, 0.01, 3, 3) == "better"
    assert verdict(-0.02, 0.01, 3, 3) == "worse"
    assert verdict(0.02, 0.2, 3, 3) == "no detectable difference at n=3"
    assert verdict(0.02, 0.2, 3, 5) == "no detectable difference at n=3 vs 5"


def test_welch_and_paired_agree_on_the_difference() -> None:
    for a, b in itertools.permutations([BN, NO_BN, [0.81, 0.86, 0.80]], 2):
        assert welch_test(a, b).delta == pytest.approx(paired_test(a, b).delta)
