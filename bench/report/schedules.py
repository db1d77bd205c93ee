"""The schedule study's findings and figure: what a `schedules` profile (bench/suites/*.yaml,
docs/cwrnn.md "The schedule study") answers, computed from its runs.

Its rows are CW-RNN variants `cwrnn/<schedule>` (models/schedules.py) trained with one recipe.
From the leaderboard's table of the profile (bench/report/leaderboard.py) and its runs this
module says, in Findings lines:

- which schedule is best and which are tied with it, by the leaderboard's own rule: a row is
  tied with the best when its two-sided Welch test against the best gives p >= SEPARATED, or
  no test is possible;
- the start convention: mean(t from 1) - mean(t from 0) of the exponential schedule
  (`cwrnn/exponential@start=1` against `cwrnn/exponential`);
- clock versus wiring: dense (the clock off), full and reversed wiring, each against the
  exponential schedule;
- the number of modules g: the exponential schedule's metric per g;

each difference with its 95% Welch interval (Student's t with the Welch-Satterthwaite degrees
of freedom: the interval that goes with the leaderboard's Welch test), each mean with its 95%
bootstrap interval (the leaderboard's ci95). The unit is the seed: a seed's value is its mean
over the targets it ran on, as in the leaderboard. And it draws the figure
`<metric>_by_variant_schedules.png`: the metric per variant, seeds as dots, variants sorted, the paper's
exponential schedule highlighted.

It reads the leaderboard's table and frame and writes nothing but the figure; the leaderboard
calls it for the profile named STUDY only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from bench.report.stats import bootstrap_ci, welch_p

STUDY = "schedules"  # the profile name the findings and the figure are for
SEPARATED = 0.05  # the leaderboard's level for "separated from the best" (bench/report/leaderboard.py)
PAPER = "cwrnn/exponential"
START = "cwrnn/exponential@start=1"
WIRING = {"dense (clock off, wiring kept)": "cwrnn/dense",
          "full wiring (clock kept)": "cwrnn/exponential@wiring=full",
          "reversed wiring (clock kept)": "cwrnn/exponential@wiring=reversed"}
G_ROW = "cwrnn/exponential@g="


def welch_interval(a, b, confidence: float = 0.95) -> tuple[float, float, float] | None:
    """mean(a) - mean(b) with its Welch interval: Student's t with the Welch-Satterthwaite
    degrees of freedom. None with fewer than 2 values on a side; (d, d, d) where neither side
    has spread (the difference is then exact)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) < 2 or len(b) < 2:
        return None
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return diff, diff - half, diff + half


def _short(arch: str) -> str:
    return arch.removeprefix("cwrnn/")


def _num(x: float) -> str:
    return f"{x:.3g}"


def _difference(diff: tuple[float, float, float] | None, higher: bool) -> str:
    """'+0.012 [-0.003, 0.027] (no difference shown)': better/worse where the interval excludes 0."""
    if diff is None:
        return "too few seeds for an interval"
    d, low, high = diff
    if low > 0 or high < 0:
        verdict = "better" if (d > 0) == higher else "worse"
    else:
        verdict = "no difference shown"
    return f"{d:+.3g} [{_num(low)}, {_num(high)}] ({verdict})"


def _values(part: pd.DataFrame, arch: str) -> np.ndarray | None:
    rows = part[(part["arch"] == arch) & ~part["external"]]
    if rows.empty:
        return None
    return np.asarray(rows.iloc[0]["_per_seed"], dtype=float)


def findings(part: pd.DataFrame, primary: str, higher: bool) -> list[str]:
    """The study's Findings lines for one profile's leaderboard rows (`part`: one task setting
    and budget per group, as the leaderboard ranks them); [] for a profile that is not STUDY."""
    if part.empty or part["profile"].iloc[0] != STUDY:
        return []
    lines = []
    groups = [c for c in part.columns if c.startswith("task.")] + ["budget"]
    sign = "higher" if higher else "lower"
    grouped = list(part.groupby(groups, dropna=False, sort=False))
    for _, group in grouped:
        group = group[~group["external"] & group[f"_mean.{primary}"].notna()]
        if group.empty:
            continue
        # a profile of one task setting and budget (the suites' study) needs no "where"
        named = [f"budget {group['budget'].iloc[0]}", *(f"{c.removeprefix('task.')} {group[c].iloc[0]}"
                                                        for c in groups[:-1])]
        where = "" if len(grouped) == 1 else f" ({', '.join(named)})"
        lines.append(_best_line(group, primary, higher) + where + ".")
        lines += [line + where + "." for line in _effect_lines(group, primary, higher)]
    if lines:
        lines.append(f"How to read the study's lines: differences are of the per-seed {primary} ({sign} is better), "
                     "with 95% Welch intervals (t with Welch-Satterthwaite degrees of freedom); a mean's interval is "
                     "its 95% bootstrap interval (ci95); better/worse where the interval excludes 0.")
    return lines


def _best_line(group: pd.DataFrame, primary: str, higher: bool) -> str:
    means = group.set_index("arch")[f"_mean.{primary}"]
    best = means.idxmax() if higher else means.idxmin()
    best_values = _values(group, best)
    tied, apart = [], []
    for arch in means.sort_values(ascending=not higher).index:
        if arch == best:
            continue
        p = welch_p(_values(group, arch), best_values)
        (tied if p is None or p >= SEPARATED else apart).append(
            f"{_short(arch)} (p {'—' if p is None else f'{p:.2g}'})")
    text = f"Best schedule: {_short(best)} ({primary} {_num(means[best])}); "
    tied_text = "tied with it (Welch p >= 0.05 or no test possible): " + ", ".join(tied)
    text += tied_text if tied else "no row tied with it"
    if apart:
        text += f"; separated from it: {', '.join(apart)}"
    return text


def _effect_lines(group: pd.DataFrame, primary: str, higher: bool) -> list[str]:
    lines = []
    base = _values(group, PAPER)
    if base is None:
        return lines
    start = _values(group, START)
    if start is not None:
        lines.append("Start convention (exponential): mean(t from 1) − mean(t from 0) = "
                     + _difference(welch_interval(start, base), higher))
    wiring = [(name, _values(group, arch)) for name, arch in WIRING.items()]
    wiring = [(name, v) for name, v in wiring if v is not None]
    if wiring:
        lines.append("Clock versus wiring (each − exponential): "
                     + "; ".join(f"{name} {_difference(welch_interval(v, base), higher)}" for name, v in wiring))
    per_g = _per_g(group)
    if len(per_g) > 1:
        lines.append(f"Modules g (exponential, {primary} with its 95% interval): "
                     + "; ".join(f"g = {g} {_num(v.mean())} {_ci_text(v)}" for g, v in per_g))
    return lines


def _ci_text(values: np.ndarray) -> str:
    ci = bootstrap_ci(values)
    return "[—]" if ci is None else f"[{_num(ci[0])}, {_num(ci[1])}]"


def _per_g(group: pd.DataFrame) -> list[tuple[int, np.ndarray]]:
    """(g, per-seed values) of the exponential schedule at each g in the group: the plain row at
    the profile's g and each `@g=` row; sorted by g."""
    found = {}
    for _, row in group.iterrows():
        arch = row["arch"]
        if arch == PAPER or (arch.startswith(G_ROW) and arch[len(G_ROW):].isdigit()):
            found[len(str(row["periods"]).split(","))] = np.asarray(row["_per_seed"], dtype=float)
    return sorted(found.items())
