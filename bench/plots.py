"""Leaderboard plots (seaborn, PNG), computed from the stored runs of one task.

Each suite file lists its plots by name under `leaderboard.plots`; PLOTS maps those
names to functions (df, records, suite, out_dir) -> written path or None. A function
gets the runs of one profile only and names its file after it (`<name>_<profile>.png`):
profiles differ in training protocol, so a figure pooling them would average apples
with pears.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.files import write_figure  # noqa: E402


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def _path(out: Path, stem: str, df: pd.DataFrame) -> Path:
    profiles = sorted(df["profile"].unique())
    if len(profiles) != 1:
        raise ValueError(f"a plot shows one profile's runs, got profiles {profiles}")
    return out / f"{stem}_{profiles[0]}.png"


def _title(suite, df) -> str:
    return f"{suite.get('title', suite['task'])} [{df['profile'].iloc[0]}]"


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    write_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def metric_vs_x(df, records, suite, out: Path):
    """Primary metric vs a task parameter (e.g. recall accuracy vs delay), per architecture."""
    x = suite["leaderboard"]["x_axis"]
    primary = df["primary"].iloc[0]
    data = _ok(df)
    if data.empty or f"task.{x}" not in data:
        return None
    style = suite["leaderboard"].get("style")
    style = f"task.{style}" if style else None
    fig, ax = plt.subplots(figsize=(9, 4.5))
    sns.lineplot(data=data, x=f"task.{x}", y=f"metric.{primary}", hue="arch", style=style, marker="o",
                 errorbar="sd", ax=ax)
    ax.set(xlabel=x, ylabel=primary, title=f"{_title(suite, df)}: {primary} vs {x}")
    if f"baseline.{primary}" in data:
        ax.axhline(data[f"baseline.{primary}"].mean(), color="grey", ls=":", label="baseline")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(fig, _path(out, f"{primary}_vs_{x}", df))


def metric_vs_budget(df, records, suite, out: Path):
    """Primary metric vs parameter budget per architecture, log-log (the paper's size sweep)."""
    primary = df["primary"].iloc[0]
    data = _ok(df)
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=data, x="budget", y=f"metric.{primary}", hue="arch", marker="o", errorbar="sd", ax=ax)
    ax.set(xscale="log", yscale="log", xlabel="parameter budget", ylabel=primary,
           title=f"{_title(suite, df)}: {primary} vs budget")
    ax.legend(fontsize=7)
    return _save(fig, _path(out, f"{primary}_vs_budget", df))


def learning_curves(df, records, suite, out: Path):
    """Validation primary metric over training steps, per architecture (mean over seeds)."""
    primary = df["primary"].iloc[0]
    setting_cols = [c for c in df.columns if c.startswith("task.") and df[c].nunique() > 1]
    points = []
    for record, (_, row) in zip(records, df.iterrows()):
        for p in record.get("curve", []):
            if f"val/{primary}" in p:
                setting = ", ".join(f"{c.removeprefix('task.')}={row[c]}" for c in setting_cols) or "all"
                points.append({"step": p["step"], primary: p[f"val/{primary}"], "arch": row["arch"],
                               "setting": setting, "budget": row["budget"]})
    if not points:
        return None
    data = pd.DataFrame(points)
    grid = sns.relplot(data=data, x="step", y=primary, hue="arch", col="setting",
                       col_wrap=min(4, data["setting"].nunique()), kind="line", errorbar=None,
                       height=3, aspect=1.2, facet_kws={"sharey": True})
    grid.figure.suptitle(f"{_title(suite, df)}: validation {primary} during training", y=1.02)
    path = _path(out, "learning_curves", df)
    write_figure(grid.figure, path, dpi=100, bbox_inches="tight")
    plt.close(grid.figure)
    return path


def waveforms(df, records, suite, out: Path):
    """The paper's figure: target vs generated waveform of each architecture's best run
    (lowest NMSE) at the profile's largest budget, all on one target, the one of the best
    run overall at that budget, so that the panels compare like with like."""
    from tasks.audio import plot_waveforms

    ok = [r for r in records if r["status"] == "ok" and r["artifacts"].get("generated")]
    if not ok:
        return None
    budget = max(r["budget"] for r in ok)
    at_budget = sorted((r for r in ok if r["budget"] == budget), key=lambda r: (r["metrics"]["nmse"], r["run_id"]))
    on_target = lambda r: (r["task_params"]["target"], r["task_params"].get("sha256"))
    target = on_target(at_budget[0])
    chosen = {}
    for r in at_budget:  # best first: the first run of an arch on the target is its best
        if on_target(r) == target:
            chosen.setdefault(r["arch"], r)
    fig, axes = plt.subplots(len(chosen), 1, figsize=(8, 1.8 * len(chosen)), sharex=True, squeeze=False)
    for ax, (arch, r) in zip(axes[:, 0], sorted(chosen.items())):
        plot_waveforms(ax, r["artifacts"]["target"], r["artifacts"]["generated"], label=arch,
                       sample_rate=r["task_params"]["sample_rate"])
        ax.set_title(f"{arch}: {r['params']} params, seed {r['seed']}, NMSE {r['metrics']['nmse']:.3g}", fontsize=9)
    name = target[0] + (f" ({target[1][:8]})" if target[1] else "")
    fig.suptitle(f"[{df['profile'].iloc[0]}] {name}, budget {budget}: best run per architecture, "
                 "target vs generated", fontsize=10)
    return _save(fig, _path(out, "waveforms", df))


def metric_by_arch(df, records, suite, out: Path):
    """Primary metric per architecture with its spread over seeds (one box per budget)."""
    primary = df["primary"].iloc[0]
    data = _ok(df)
    if data.empty:
        return None
    np.random.seed(0)  # the strip plot's jitter: the same picture on every rebuild
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.boxplot(data=data, x="arch", y=f"metric.{primary}", hue="budget", ax=ax, fliersize=0)
    sns.stripplot(data=data, x="arch", y=f"metric.{primary}", hue="budget", dodge=True, ax=ax,
                  palette="dark:k", size=3, legend=False)
    ax.set(xlabel="", ylabel=primary, title=f"{_title(suite, df)}: {primary} per architecture")
    ax.tick_params(axis="x", rotation=20)
    return _save(fig, _path(out, f"{primary}_by_arch", df))


def confusion(df, records, suite, out: Path):
    """Confusion matrix of the best run (lowest primary metric) from its test predictions."""
    from tasks import task_class

    ok = [r for r in records if r["status"] == "ok" and r["artifacts"].get("true")]
    if not ok:
        return None
    sign = -1 if ok[0]["higher_is_better"] else 1
    best = min(ok, key=lambda r: (sign * r["metrics"][r["primary_metric"]], r["run_id"]))
    names = list(getattr(task_class(best["task"]), "class_names", []))
    n = len(names) or 1 + max(best["artifacts"]["true"] + best["artifacts"]["pred"])
    matrix = pd.crosstab(pd.Categorical(best["artifacts"]["true"], categories=range(n)),
                         pd.Categorical(best["artifacts"]["pred"], categories=range(n)), dropna=False)
    if names:
        matrix.index, matrix.columns = names, names
    fig, ax = plt.subplots(figsize=(8, 7))
    sns.heatmap(matrix, annot=True, fmt="d", cbar=False, cmap="Blues", ax=ax, annot_kws={"size": 6})
    ax.set(xlabel="predicted", ylabel="true",
           title=f"[{best['profile']}] best run: {best['arch']}, {best['params']} params, seed {best['seed']}, "
                 f"{best['primary_metric']} {best['metrics'][best['primary_metric']]:.3g}")
    return _save(fig, _path(out, "confusion_best", df))


PLOTS = {
    "waveforms": waveforms,
    "metric_by_arch": metric_by_arch,
    "confusion": confusion,
    "metric_vs_x": metric_vs_x,
    "metric_vs_budget": metric_vs_budget,
    "learning_curves": learning_curves,
}


def make_plots(task, df, records, suite, out: Path) -> dict[str, list[Path]]:
    """Every plot the suite lists, once per profile; returns {profile: written paths}."""
    names = suite.get("leaderboard", {}).get("plots", ["learning_curves"])
    written = {}
    for profile in sorted(df["profile"].unique()):
        mine = (df["profile"] == profile).to_numpy()
        runs = df[mine]
        runs_records = [r for r, keep in zip(records, mine) if keep]  # same order as runs: plots zip them
        paths = [PLOTS[name](runs, runs_records, suite, out) for name in names]
        written[profile] = [p for p in paths if p is not None]
    return written
