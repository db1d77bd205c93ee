"""The schedule study's Findings and figure (bench/report/schedules.py) from hand-made run
records: the best schedule and the rows tied with it by the leaderboard's Welch rule, the
start-convention effect and clock-versus-wiring differences with Welch intervals (checked
against scipy's), the metric per g with bootstrap intervals, and the figure written."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
from scipy import stats

from bench.report import leaderboard
from bench.report.leaderboard import build_leaderboard, leaderboard_table, runs_frame
from bench.report.schedules import SEPARATED, findings, welch_interval
from bench.report.stats import bootstrap_ci, welch_p
from bench.store.records import RunRecord

COPY = {"task": "copy", "title": "Copy", "leaderboard": {"aggregate_over": []}}
EXP8 = [1, 2, 4, 8, 16, 32, 64, 128]
TASK = {"delay": 100, "variable_delay": False}


def record(arch, seed, value, periods=EXP8, offset=0, profile="schedules"):
    schedule = arch.removeprefix("cwrnn/")
    return {
        "run_id": hashlib.sha256(repr((arch, seed, profile)).encode()).hexdigest()[:16],
        "task": "copy", "profile": profile, "task_params": TASK, "arch": arch,
        "model": {"arch": "cwrnn", "hidden_size": 4 * len(periods), "schedule": schedule, "periods": periods,
                  "module_sizes": [4] * len(periods), "offset": offset, "order": []},
        "budget": 10000, "params": 10000, "effective_params": 10000, "seed": seed, "status": "ok", "reason": "",
        "train": {"steps": 10, "batch_size": 4, "optimizer": "adam", "lr": 0.01},
        "metrics": {"recall_accuracy": value},
        "curve": [{"step": s, "val/recall_accuracy": value} for s in (5, 10)],
        "artifacts": {}, "backend": "compiled", "sources": {}, "baselines": {"recall_accuracy": 0.125},
        "primary_metric": "recall_accuracy", "higher_is_better": True, "wall_time_s": 1.0, "device": "cpu",
        "git_commit": "abc", "versions": {"torch": "2"}, "date": "2026-01-01T00:00:00+00:00",
        "command": "cwbench run copy --profile schedules", "learned": True,
    }


VALUES = {  # per seed; recall accuracy, higher is better
    "cwrnn/exponential": [0.60, 0.62, 0.58, 0.61, 0.59],
    "cwrnn/linear": [0.61, 0.66, 0.55, 0.63, 0.60],
    "cwrnn/exponential@start=1": [0.70, 0.72, 0.69, 0.71, 0.73],  # the best
    "cwrnn/dense": [0.40, 0.42, 0.41, 0.39, 0.43],
    "cwrnn/exponential@wiring=full": [0.55, 0.80, 0.50, 0.85, 0.70],  # noisy: tied with the best
    "cwrnn/exponential@wiring=reversed": [0.30, 0.31, 0.29, 0.30, 0.32],
    "cwrnn/exponential@g=4": [0.50, 0.52, 0.51, 0.49, 0.48],
}


def records(profile="schedules"):
    out = []
    for arch, values in VALUES.items():
        periods = EXP8[:4] if arch.endswith("@g=4") else EXP8
        offset = -1 if arch.endswith("@start=1") else 0
        out += [record(arch, seed, v, periods, offset, profile) for seed, v in enumerate(values)]
    return out


def study_lines(profile="schedules"):
    df = runs_frame([RunRecord.from_dict(r) for r in records(profile)])
    table = leaderboard_table(df, COPY)
    return findings(table[table["profile"] == profile], "recall_accuracy", True)


def test_welch_interval_is_scipys():
    rng = np.random.default_rng(1)
    for n_a, n_b in ((5, 5), (3, 8), (20, 4)):
        a, b = rng.normal(0.3, 0.1, n_a), rng.normal(0.5, 0.3, n_b)
        diff, low, high = welch_interval(a, b)
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        assert diff == pytest.approx(a.mean() - b.mean(), abs=1e-12)
        assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert welch_interval([1.0], [1.0, 2.0]) is None
    assert welch_interval([1.0, 1.0], [0.5, 0.5]) == (0.5, 0.5, 0.5)


def test_the_level_is_the_leaderboards():
    assert SEPARATED == leaderboard.SEPARATED


def numbers(text):
    return [float(x) for x in re.findall(r"[-+]?\d+\.?\d*(?:e[-+]?\d+)?", text)]


def test_best_and_tied_rows_follow_the_welch_rule():
    best = next(line for line in study_lines() if line.startswith("Best schedule"))
    assert best.startswith("Best schedule: exponential@start=1 (recall_accuracy 0.71)")
    top = VALUES["cwrnn/exponential@start=1"]
    tied_part, _, apart_part = best.partition("; separated from it: ")
    for arch, values in VALUES.items():
        if arch == "cwrnn/exponential@start=1":
            continue
        p = welch_p(values, top)
        name = arch.removeprefix("cwrnn/") + f" (p {p:.2g})"
        assert name in (tied_part if p >= SEPARATED else apart_part), (name, best)
    assert "exponential@wiring=full (p" in tied_part  # noisy: not separated
    assert "exponential@wiring=reversed (p" in apart_part
    assert best.endswith(")."), best


def test_start_convention_and_clock_versus_wiring_with_their_intervals():
    lines = study_lines()
    start = next(line for line in lines if line.startswith("Start convention"))
    base = VALUES["cwrnn/exponential"]
    ci = stats.ttest_ind(VALUES["cwrnn/exponential@start=1"], base, equal_var=False).confidence_interval(0.95)
    d = np.mean(VALUES["cwrnn/exponential@start=1"]) - np.mean(base)
    assert numbers(start.split("=")[-1])[:3] == pytest.approx([d, ci.low, ci.high], rel=5e-3)
    assert "(better)" in start  # the interval excludes 0, and higher is better here
    wiring = next(line for line in lines if line.startswith("Clock versus wiring"))
    parts = wiring.split(": ", 1)[1].split("; ")
    assert [p.split(" (")[0] for p in parts] == ["dense", "full wiring", "reversed wiring"]
    for part, arch, verdict in zip(parts, ["cwrnn/dense", "cwrnn/exponential@wiring=full",
                                           "cwrnn/exponential@wiring=reversed"],
                                   ["(worse)", "(no difference shown)", "(worse)"]):
        ci = stats.ttest_ind(VALUES[arch], base, equal_var=False).confidence_interval(0.95)
        got = numbers(part.split(")", 1)[1])[:3]
        assert got == pytest.approx([np.mean(VALUES[arch]) - np.mean(base), ci.low, ci.high], rel=5e-3), part
        assert verdict in part


def test_metric_per_g_with_bootstrap_intervals():
    g_line = next(line for line in study_lines() if line.startswith("Modules g"))
    assert g_line.index("g = 4") < g_line.index("g = 8")
    for g, arch in ((4, "cwrnn/exponential@g=4"), (8, "cwrnn/exponential")):
        low, high = bootstrap_ci(VALUES[arch])
        part = g_line.split(f"g = {g} ")[1]
        assert numbers(part)[:3] == pytest.approx([np.mean(VALUES[arch]), low, high], rel=5e-3)


def test_other_profiles_get_no_study_lines():
    assert study_lines("tuned") == []


def test_the_leaderboard_has_the_findings_and_the_figure(tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    (out / "runs.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records()))
    written = build_leaderboard("copy", tmp_path, log=lambda *a: None)
    figure = out / "recall_accuracy_by_variant_schedules.png"
    assert figure in written and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "leaderboard.md").read_text()
    assert "- Start convention (exponential): mean(t from 1) − mean(t from 0) = +0.11 [0.0869, 0.133] (better)." in md
    assert "(recall_accuracy_by_variant_schedules.png)" in md
    build_leaderboard("copy", tmp_path, log=lambda *a: None)
    assert figure.exists()  # a rebuild keeps it (the folder's stale figures are removed)


def test_a_recipe_profile_says_where_its_recipe_comes_from():
    from bench.report.tuned import protocol_line
    from bench.suite.suites import load_suite

    line = protocol_line(load_suite("audio"), "schedules")
    assert "the search of profile tuned chose for cwrnn/exponential" in line and "fixed recipe" not in line
