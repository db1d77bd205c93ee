"""The two statistics a leaderboard row carries beyond mean and std: a bootstrap interval
of the mean over seeds, and a Welch t-test against the best row of its group.

Both return None where the data cannot carry the statistic (too few seeds, no spread),
so that a table shows "—" instead of a NaN, and the build never prints a warning.
"""

from __future__ import annotations

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
