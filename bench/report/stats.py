"""The statistics of a leaderboard: the two a row carries beyond mean and std (a bootstrap
interval of the mean over seeds, a Welch t-test against the best row of its group), and the
test `cwbench verify` puts reruns of a row to (a permutation test, Holm-corrected over rows).

The first two return None where the data cannot carry the statistic (too few seeds, no spread),
so that a table shows "—" instead of a NaN, and the build never prints a warning.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
from scipy import stats

RESAMPLES = 9999
SEED = 0  # fixed: rebuilding a leaderboard from the same runs gives the same bytes


def _clean(values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[~np.isnan(x)]


def _no_spread(x: np.ndarray) -> bool:
    # scipy's own test for "nearly identical" data: a spread within rounding of the values
    return np.ptp(x) <= 10 * np.finfo(float).eps * np.abs(x).max()


def bootstrap_ci(values, confidence: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean; None with fewer than 2 values, and
    (v, v) for values without spread."""
    x = _clean(values)
    if len(x) < 2:
        return None
    # percentile, not BCa: BCa's jackknife fails (with a warning) on two or three lumpy seeds
    result = stats.bootstrap((x,), np.mean, n_resamples=RESAMPLES, confidence_level=confidence,
                             method="percentile", rng=np.random.default_rng(SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def welch_p(a, b) -> float | None:
    """Two-sided Welch t-test p-value of two samples; None when no test is possible:
    fewer than 2 values on a side, or no spread on either side."""
    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2 or (_no_spread(a) and _no_spread(b)):
        return None
    with warnings.catch_warnings():
        # one side without spread (every seed stuck at the baseline, say) has variance 0,
        # which is exact; scipy's precision warning about it says nothing here
        warnings.filterwarnings("ignore", message="Precision loss", category=RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


# ---------------------------------------------------------------------------------------
# `cwbench verify`: are K reruns of a row draws from the distribution of its n committed seeds?

EXACT_LIMIT = 200_000  # assignments enumerated exactly up to this many; sampled beyond
SAMPLED = 20_000


def _assignments(total: int, k: int) -> np.ndarray:
    """Index sets of the k values called "reruns" in each relabelling of `total` values:
    every one of the C(total, k) where that is few enough, else a fixed-seed sample."""
    if math.comb(total, k) <= EXACT_LIMIT:
        return np.array(list(itertools.combinations(range(total), k)), dtype=np.intp).reshape(-1, k)
    rng = np.random.default_rng(SEED)
    return np.argsort(rng.random((SAMPLED, total)), axis=1)[:, :k]


def permutation_p(reruns, committed) -> float:
    """Two-sided permutation p-value of |mean(reruns) - mean(committed)|: the chance that a
    relabelling of the pooled values as reruns and committed seeds puts the means at least as
    far apart. Exact for any distribution (bounded, skewed, tied, an outlier seed) when both
    are draws from one, which is what "the row reproduces" means; see docs/protocol.md."""
    return float(permutation_p_many(np.asarray([[*reruns, *committed]], dtype=float), len(reruns))[0])


def permutation_p_many(values: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """permutation_p for many rows at once: `values` (rows, k + n), reruns first."""
    values = np.asarray(values, dtype=float)
    total = values.shape[1]
    groups = _assignments(total, k)
    exact = math.comb(total, k) <= EXACT_LIMIT
    # |mean(new) - mean(old)| = (1/k + 1/n) |sum(new) - k mean(all)|: one sum per relabelling
    centre = k * values.mean(axis=1, keepdims=True)
    observed = np.abs(values[:, :k].sum(axis=1, keepdims=True) - centre)
    tie = 1e-9 * k * np.maximum(1.0, np.abs(values).max(axis=1, keepdims=True))  # float rounding of equal sums
    counts = np.empty(len(values))
    for start in range(0, len(values), chunk):
        block = values[start:start + chunk]
        sums = block[:, groups].sum(axis=2)
        far = np.abs(sums - centre[start:start + chunk]) >= observed[start:start + chunk] - tie[start:start + chunk]
        counts[start:start + chunk] = far.sum(axis=1)
    return counts / len(groups) if exact else (counts + 1) / (len(groups) + 1)


def smallest_p(n: int, k: int) -> float:
    """The smallest p-value the permutation test can give k reruns against n seeds: 1 / C(n + k, k)
    (distinct values, the reruns the k most extreme on one side). A row cannot fail a test whose
    level is below it, however far its reruns land."""
    return min(1.0, 1 / math.comb(n + k, k))


def reruns_needed(n: int, level: float, most: int = 1000) -> int | None:
    """The fewest reruns that let a row of n seeds be rejected at this level (None: over `most`)."""
    return next((k for k in range(1, most + 1) if smallest_p(n, k) <= level), None)


def holm(pvalues: list[float], alpha: float) -> list[bool]:
    """Holm's step-down correction: which hypotheses are rejected so that the chance of
    rejecting any true one is at most alpha, whatever their dependence."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        rejected[i] = True
    return rejected


def testable_rows(sizes: list[tuple[int, int]], alpha: float) -> list[bool]:
    """Which rows (n seeds, k reruns) can fail at all in a Holm family of the testable rows:
    smallest_p <= alpha / m, m being how many are testable (found by shrinking the family
    until it is stable). Depends on n and k only, never on the values: leaving the other rows
    out of the family keeps its error rate."""
    keep = [True] * len(sizes)
    while True:
        m = max(1, sum(keep))
        now = [smallest_p(n, k) <= alpha / m for n, k in sizes]
        if now == keep:
            return keep
        keep = [a and b for a, b in zip(keep, now)]


# ---------------------------------------------------------------------------------------
# The tuned protocol's search: how good a result would a search of n trials have found?

def expected_best(scores, n_max: int | None = None, higher_is_better: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Expected best score of n trials drawn i.i.d. (with replacement) from the empirical
    distribution of `scores`, and its standard deviation, for n = 1..n_max (default: as many
    as there are scores): Dodge et al. 2019 ("Show your work"), exactly, from the empirical
    CDF. With the scores sorted v_1 <= ... <= v_N, the best of n draws is v_i with
    probability (i/N)^n - ((i-1)/N)^n (the maximum; for a lower-is-better metric the minimum,
    by the same formula on the negated scores); the mean and variance are over that
    distribution. Non-finite scores are left out (a diverged trial is scored at the trivial
    baseline before it gets here)."""
    x = _clean(scores)
    x = x[np.isfinite(x)]
    if not len(x):
        raise ValueError("expected_best needs at least one finite score")
    sign = 1.0 if higher_is_better else -1.0
    v = np.sort(sign * x)
    total = len(v)
    n_max = total if n_max is None else n_max
    cdf = np.arange(total + 1) / total  # F(v_i) = i/N, with F(v_0) = 0
    means, stds = np.empty(n_max), np.empty(n_max)
    for n in range(1, n_max + 1):
        weights = cdf[1:] ** n - cdf[:-1] ** n  # P(the best of n draws is v_i)
        mean = float(weights @ v)
        means[n - 1] = sign * mean
        stds[n - 1] = math.sqrt(max(0.0, float(weights @ (v - mean) ** 2)))
    return means, stds
