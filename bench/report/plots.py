"""Leaderboard plots (seaborn, PNG), computed from the stored runs of one task.

Each suite file lists its plots by name under `leaderboard.plots`; PLOTS maps those
names to functions (df, records, suite, out_dir) -> written path or None. A function
gets the runs of one profile only and names its file after it (`<name>_<profile>.png`):
profiles differ in training protocol, so a figure pooling them would average apples
with pears.

For a reader: an architecture keeps its colour, marker and line style in every plot of
a task; architectures that land on the same value (the trivial baseline, drawn dashed)
are set side by side or marked on different steps, never drawn over each other; a
setting is named by its task (`Task.setting_label`: "variable delay 5–10"); titles are
wrapped to fit. Rebuilds are byte-identical (jitter seeded, no dates).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.report.schedules import PAPER, STUDY, _short  # noqa: E402
from bench.report.stats import bootstrap_ci  # noqa: E402
from bench.store.files import write_figure  # noqa: E402

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
DASHES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)), (0, (8, 2))]
TITLE_SIZE, FACET_SIZE = 11, 9


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def _path(out: Path, stem: str, df: pd.DataFrame) -> Path:
    profiles = sorted(df["profile"].unique())
    if len(profiles) != 1:
        raise ValueError(f"a plot shows one profile's runs, got profiles {profiles}")
    return out / f"{stem}_{profiles[0]}.png"


def _title(suite, df) -> str:
    return f"{suite.get('title', suite['task'])} [{df['profile'].iloc[0]}]"


def _wrap(text: str, width_in: float, size: float) -> str:
    """`text` broken into lines that fit `width_in` inches at font size `size` (each line kept)."""
    chars = max(12, int(width_in * 72 / (0.6 * size)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def _figure(n_panels: int, cols: int, panel: tuple[float, float]):
    """A constrained-layout figure of n_panels axes in rows of `cols`; the unused axes hidden."""
    cols = max(1, min(cols, n_panels))
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel[0] * cols + 2.2, panel[1] * rows + 0.9),
                             sharey=True, squeeze=False, layout="constrained")
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


def _suptitle(fig, text: str) -> None:
    fig.suptitle(_wrap(text, fig.get_figwidth() - 0.3, TITLE_SIZE), fontsize=TITLE_SIZE)


def _save(fig, path: Path) -> Path:
    if fig.get_layout_engine() is None:
        fig.set_layout_engine("constrained")
    # "tight": whatever sticks out of the canvas (a long label) is kept, never clipped
    write_figure(fig, path, dpi=110, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


def _arch_styles(suite: dict, archs) -> dict[str, dict]:
    """One colour, marker and line style per architecture, the same in every plot of the
    task: in the order the suite's profiles list them, then any others as they come."""
    listed = [a for profile in suite.get("profiles", {}).values() for a in profile.get("archs", [])]
    order = list(dict.fromkeys([*listed, *archs]))
    colours = sns.color_palette("tab10" if len(order) <= 10 else "husl", len(order))
    return {a: {"color": colours[i], "marker": MARKERS[i % len(MARKERS)], "ls": DASHES[i % len(DASHES)],
                "rank": i} for i, a in enumerate(order)}


def _present(styles: dict, archs) -> list[str]:
    shown = set(archs)
    return [a for a in styles if a in shown]


def _params(row: pd.Series) -> dict:
    """The task parameters of a frame row (those the run had: no NaN for a missing one)."""
    return {c.removeprefix("task."): v for c, v in row.items()
            if c.startswith("task.") and not (isinstance(v, float) and np.isnan(v))}


def _setting_keys(df: pd.DataFrame, suite: dict, exclude=()) -> list[str]:
    """Task parameters that differ between the runs shown, less the aggregated ones."""
    skip = {*suite.get("leaderboard", {}).get("aggregate_over", []), *exclude}
    return [c.removeprefix("task.") for c in df.columns
            if c.startswith("task.") and c.removeprefix("task.") not in skip and df[c].astype(str).nunique() > 1]


def _labels(df: pd.DataFrame, suite: dict, keys: list[str], x: str | None = None) -> pd.Series:
    """Each run's setting in the task's own words (Task.setting_label)."""
    from tasks import task_class

    name = task_class(suite["task"]).setting_label
    return pd.Series([name(_params(row), keys, x) for _, row in df.iterrows()], index=df.index, dtype=object)


def _per_seed(data: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean ± sample std over seeds per group (a seed's value: its mean over the runs of the
    group, e.g. over targets, as in the leaderboard), n seeds, and whether no run learned."""
    seeds = data.groupby([*by, "seed"], dropna=False)[value].mean().reset_index()
    stats = seeds.groupby(by, dropna=False)[value].agg(mean="mean", sd="std", n="count").reset_index()
    never = data.groupby(by, dropna=False)["learned"].agg(lambda s: bool(len(s)) and bool(s.eq(False).all()))
    return stats.merge(never.rename("not_learned").reset_index(), on=by)


def _baseline_value(data: pd.DataFrame, primary: str) -> float | None:
    """The task's trivial baseline of the primary metric for these runs, if they record one."""
    column = f"baseline.{primary}"
    if column not in data or data[column].isna().all():
        return None
    return float(data[column].mean())


def _baseline(ax, value: float | None, named: bool = False) -> None:
    """The trivial baseline as a dashed line (named on the plot, for a plot without a legend
    of its own that could)."""
    if value is None:
        return
    ax.axhline(value, color="0.45", ls=(0, (2, 2)), lw=1.2, zorder=1)
    if named:
        ax.annotate(f"trivial baseline ({value:.3g})", (0.01, value), xycoords=("axes fraction", "data"),
                    xytext=(0, 2), textcoords="offset points", fontsize=8, color="0.3", va="bottom")


def _legend(fig, styles: dict, archs: list[str], baseline: float | None, hollow: bool, title: str) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=styles[a]["color"], marker=styles[a]["marker"], ls=styles[a]["ls"],
                      markersize=6, label=a) for a in archs]
    if baseline is not None:
        handles.append(Line2D([], [], color="0.45", ls=(0, (2, 2)), lw=1.2, label=f"trivial baseline ({baseline:.3g})"))
    if hollow:
        handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="none", ls="",
                              label="hollow: no run learned\n(not past the baseline)"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8, title=title, title_fontsize=8,
               frameon=False)


def _points(ax, x, stats: pd.DataFrame, style: dict, runs: tuple) -> None:
    """Means with ± sd bars joined by the arch's line, a filled marker where some run learned
    and a hollow one where none did, and the single runs' values (x, y) as small dots."""
    ax.plot(*runs, ls="", marker=style["marker"], markersize=2.5, color=style["color"], alpha=0.45, zorder=2)
    sd = np.nan_to_num(stats["sd"].to_numpy(dtype=float))
    ax.errorbar(x, stats["mean"], yerr=sd, color=style["color"], ls=style["ls"], lw=1.4,
                elinewidth=1, capsize=2, zorder=3)
    for xi, yi, never in zip(x, stats["mean"], stats["not_learned"]):
        ax.plot([xi], [yi], ls="", marker=style["marker"], markersize=7, color=style["color"],
                markerfacecolor="white" if never else style["color"], markeredgewidth=1.4, zorder=4)


def metric_vs_x(df, records, suite, out: Path):
    """Primary metric vs a task parameter (e.g. recall accuracy vs delay), mean ± sd over
    seeds per architecture, one panel per remaining setting (e.g. fixed vs variable delay).
    The x values are categories, architectures side by side at each (a point plot): with
    one x value it is a dot per architecture, and no two architectures hide each other."""
    x = suite["leaderboard"].get("x_axis")
    primary = df["primary"].iloc[0]
    data = _ok(df)
    if x is None or data.empty or f"task.{x}" not in data:
        return None
    metric, column = f"metric.{primary}", f"task.{x}"
    data = data.assign(_setting=_labels(data, suite, _setting_keys(df, suite, exclude=[x]), x=x))
    styles = _arch_styles(suite, data["arch"])
    archs = _present(styles, data["arch"].unique())
    xs = sorted(data[column].unique(), key=lambda v: (isinstance(v, str), v))
    where = {v: i for i, v in enumerate(xs)}
    settings = list(dict.fromkeys(sorted(data["_setting"], key=lambda s: (s.startswith("variable"), s))))
    panel_width = max(3.2, 1.1 + 0.5 * len(xs) * len(archs) ** 0.5)
    fig, axes = _figure(len(settings), 3, (panel_width, 3.6))
    width = 0.6 / len(archs)
    hollow = False
    for ax, setting in zip(axes, settings):
        part = data[data["_setting"] == setting]
        stats = _per_seed(part, ["arch", column], metric)
        for i, arch in enumerate(archs):
            mine = stats[stats["arch"] == arch].sort_values(column, key=lambda c: c.map(where))
            if mine.empty:
                continue
            shift = (i - (len(archs) - 1) / 2) * width
            runs = part[part["arch"] == arch]
            _points(ax, mine[column].map(where) + shift, mine, styles[arch],
                    runs=(runs[column].map(where) + shift, runs[metric]))
            hollow |= bool(mine["not_learned"].any())
        _baseline(ax, _baseline_value(part, primary))
        ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        ax.set_xlim(-0.5, len(xs) - 0.5)
        if setting:
            ax.set_title(_wrap(setting, panel_width - 0.2, FACET_SIZE), fontsize=FACET_SIZE)
        ax.set_xlabel(x)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(primary)
    _legend(fig, styles, archs, _baseline_value(data, primary), hollow, "mean ± sd over seeds\n(dots: single runs)")
    _suptitle(fig, f"{_title(suite, df)}: {primary} vs {x}")
    return _save(fig, _path(out, f"{primary}_vs_{x}", df))


def metric_vs_budget(df, records, suite, out: Path):
    """Primary metric vs parameter budget per architecture (the paper's size sweep), mean ± sd
    over seeds, log x (and log y where the values span more than a decade); architectures
    nudged apart along x so that none hides another."""
    primary = df["primary"].iloc[0]
    data = _ok(df)
    if data.empty:
        return None
    metric = f"metric.{primary}"
    styles = _arch_styles(suite, data["arch"])
    archs = _present(styles, data["arch"].unique())
    stats = _per_seed(data, ["arch", "budget"], metric)
    fig, (ax,) = _figure(1, 1, (6.2, 4.2))
    hollow = False
    for i, arch in enumerate(archs):
        mine = stats[stats["arch"] == arch].sort_values("budget")
        factor = 10 ** ((i - (len(archs) - 1) / 2) * 0.018)  # a dodge, even on a log axis
        runs = data[data["arch"] == arch]
        _points(ax, mine["budget"] * factor, mine, styles[arch], runs=(runs["budget"] * factor, runs[metric]))
        hollow |= bool(mine["not_learned"].any())
    _baseline(ax, _baseline_value(data, primary))
    budgets = sorted(data["budget"].unique())
    values = data[metric][data[metric] > 0]
    wide = not values.empty and len(values) == len(data) and values.max() / values.min() > 10
    ax.set(xscale="log", yscale="log" if wide else "linear", xlabel="parameter budget", ylabel=primary)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlim(budgets[0] / 1.4, budgets[-1] * 1.4)
    ax.grid(alpha=0.3)
    _legend(fig, styles, archs, _baseline_value(data, primary), hollow, "mean ± sd over seeds\n(dots: single runs)")
    _suptitle(fig, f"{_title(suite, df)}: {primary} vs budget")
    return _save(fig, _path(out, f"{primary}_vs_budget", df))


def learning_curves(df, records, suite, out: Path):
    """Validation primary metric over training steps, per architecture (mean over seeds,
    and over the aggregated settings such as targets), one panel per setting and budget.
    Each architecture has its own line style and marker, the markers staggered along the
    curve, so that curves lying on top of each other (at the baseline) can still be told apart."""
    primary = df["primary"].iloc[0]
    labels = _labels(df, suite, _setting_keys(df, suite))
    several_budgets = df["budget"].nunique() > 1
    points, panel_rows = [], {}
    for record, (index, row) in zip(records, df.iterrows()):
        panel = "\n".join(p for p in (labels[index], f"budget {row['budget']}" if several_budgets else "") if p)
        panel_rows.setdefault(panel, []).append(index)
        for p in (record.curve or []):
            if f"val/{primary}" in p:
                points.append({"step": p["step"], "value": p[f"val/{primary}"], "arch": row["arch"],
                               "panel": panel, "budget": row["budget"], "seed": row["seed"]})
    if not points:
        return None
    data = pd.DataFrame(points)
    order = data[["panel", "budget"]].drop_duplicates()
    order = order.assign(_variable=order["panel"].str.startswith("variable")).sort_values(
        ["budget", "_variable", "panel"])
    panels = list(dict.fromkeys(order["panel"]))
    styles = _arch_styles(suite, data["arch"])
    archs = _present(styles, data["arch"].unique())
    fig, axes = _figure(len(panels), 4 if len(panels) != 5 else 3, (3.6, 2.9))
    # one run that blew up (an NMSE of 1e28) would flatten every other curve on a linear axis
    values = data.groupby(["panel", "arch", "step"])["value"].mean()
    wide = bool((values > 0).all() and values.max() > 100 * values.min())
    for ax, panel in zip(axes, panels):
        part = data[data["panel"] == panel]
        curves = part.groupby(["arch", "step"])["value"].mean().reset_index()
        for i, arch in enumerate(archs):
            curve = curves[curves["arch"] == arch].sort_values("step")
            if curve.empty:
                continue
            # each arch's markers on steps of their own, at most about 10 on a curve
            stride = max(1, min(len(archs), len(curve)), -(-len(curve) // 10))
            ax.plot(curve["step"], curve["value"], color=styles[arch]["color"], ls=styles[arch]["ls"], lw=1.5,
                    marker=styles[arch]["marker"], markersize=5, markevery=(i % stride, stride), zorder=3)
        _baseline(ax, _baseline_value(df[df.index.isin(panel_rows[panel])], primary))
        if panel:
            ax.set_title(_wrap(panel, 3.4, FACET_SIZE), fontsize=FACET_SIZE)
        if wide:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes[:: min(len(axes), 4 if len(panels) != 5 else 3)]:
        ax.set_ylabel(f"validation {primary}")
    aggregated = [k for k in suite.get("leaderboard", {}).get("aggregate_over", []) if k != "sha256"]
    _legend(fig, styles, archs, _baseline_value(df, primary), False,
            "mean over seeds" + "".join(f" and {k}s" for k in aggregated))
    _suptitle(fig, f"{_title(suite, df)}: validation {primary} during training")
    return _save(fig, _path(out, "learning_curves", df))


def waveforms(df, records, suite, out: Path):
    """The paper's figure: target vs generated waveform of each architecture's best run
    (lowest NMSE) at the profile's largest budget, all on one target, the one of the best
    run overall at that budget, so that the panels compare like with like."""
    from tasks.audio import plot_waveforms

    ok = [r for r in records if r.status == "ok" and r.artifacts.get("generated")]
    if not ok:
        return None
    budget = max(r.budget for r in ok)
    at_budget = sorted((r for r in ok if r.budget == budget), key=lambda r: (r.metrics["nmse"], r.run_id))
    on_target = lambda r: (r.task_params["target"], r.task_params.get("sha256"))
    target = on_target(at_budget[0])
    chosen = {}
    for r in at_budget:  # best first: the first run of an arch on the target is its best
        if on_target(r) == target:
            chosen.setdefault(r.arch, r)
    fig, axes = plt.subplots(len(chosen), 1, figsize=(8, 1.8 * len(chosen)), sharex=True, squeeze=False)
    order = _arch_styles(suite, sorted(chosen))  # the task's order of architectures, as in the other plots
    for ax, (arch, r) in zip(axes[:, 0], sorted(chosen.items(), key=lambda item: order[item[0]]["rank"])):
        plot_waveforms(ax, r.artifacts["target"], r.artifacts["generated"], label=arch,
                       sample_rate=r.task_params["sample_rate"])
        ax.set_title(f"{arch}: {r.params} params, seed {r.seed}, NMSE {r.metrics['nmse']:.3g}", fontsize=9)
    name = target[0] + (f" ({target[1][:8]})" if target[1] else "")
    fig.suptitle(_wrap(f"[{df['profile'].iloc[0]}] {name}, budget {budget}: best run per architecture, "
                       "target vs generated", 7.7, 10), fontsize=10)
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
    _baseline(ax, _baseline_value(data, primary), named=True)
    ax.set(xlabel="", ylabel=primary)
    ax.set_title(_wrap(f"{_title(suite, df)}: {primary} per architecture (box and dots: single runs)", 6.6,
                       TITLE_SIZE), fontsize=TITLE_SIZE)
    ax.tick_params(axis="x", rotation=20)
    return _save(fig, _path(out, f"{primary}_by_arch", df))


def confusion(df, records, suite, out: Path):
    """Confusion matrix of the best run (lowest primary metric) from its test predictions."""
    from tasks import task_class

    ok = [r for r in records if r.status == "ok" and r.artifacts.get("true")]
    if not ok:
        return None
    sign = -1 if ok[0].higher_is_better else 1
    best = min(ok, key=lambda r: (sign * r.metrics[r.primary_metric], r.run_id))
    names = list(getattr(task_class(best.task), "class_names", []))
    n = len(names) or 1 + max(best.artifacts["true"] + best.artifacts["pred"])
    matrix = pd.crosstab(pd.Categorical(best.artifacts["true"], categories=range(n)),
                         pd.Categorical(best.artifacts["pred"], categories=range(n)), dropna=False)
    if names:
        matrix.index, matrix.columns = names, names
    fig, ax = plt.subplots(figsize=(8, 7))
    sns.heatmap(matrix, annot=True, fmt="d", cbar=False, cmap="Blues", ax=ax, annot_kws={"size": 6})
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(_wrap(f"[{best.profile}] best run: {best.arch}, {best.params} params, seed {best.seed}, "
                       f"{best.primary_metric} {best.metrics[best.primary_metric]:.3g}", 7, TITLE_SIZE),
                 fontsize=TITLE_SIZE)
    return _save(fig, _path(out, "confusion_best", df))


def expected_best_plot(frame: pd.DataFrame, report, suite: dict, out: Path) -> Path | None:
    """A searched profile's expected best validation score against the number of trials
    (Dodge et al. 2019; bench.report.stats.expected_best), one line per architecture with
    its ± 1 std band clipped to the observed scores: does the ranking depend on how many
    trials the search is given? `expected_best_vs_trials_<profile>.png`."""
    if not len(frame):
        return None
    archs = list(dict.fromkeys(frame["arch"]))
    styles = _arch_styles(suite, archs)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for arch in _present(styles, archs):
        rows = frame[frame["arch"] == arch]
        style = styles[arch]
        ax.fill_between(rows["trials"], rows["low"], rows["high"], color=style["color"], alpha=0.15, lw=0)
        ax.plot(rows["trials"], rows["expected_best"], color=style["color"], ls=style["ls"], lw=1.6,
                marker=style["marker"], markersize=4, markevery=max(1, len(rows) // 8), label=arch)
    scores = frame[["low", "high"]].to_numpy(dtype=float)
    if scores.min() > 0 and scores.max() / scores.min() > 100:
        ax.set_yscale("log")
    _baseline(ax, report.baseline, named=True)  # a line that stays on it: that architecture never learned
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trials of the search (n)")
    best = "highest" if report.higher else "lowest"
    ax.set_ylabel(f"expected {best} validation {report.primary}")
    ax.legend(fontsize=8, frameon=False, title="band: ± 1 std", title_fontsize=8)
    _suptitle(fig, f"{suite.get('title', suite['task'])} [{report.profile_name}]: expected best of n trials "
                   f"({report.studies} x {report.trials} trials per architecture)")
    return _save(fig, out / f"expected_best_vs_trials_{report.profile_name}.png")


PLOTS = {
    "waveforms": waveforms,
    "metric_by_arch": metric_by_arch,
    "confusion": confusion,
    "metric_vs_x": metric_vs_x,
    "metric_vs_budget": metric_vs_budget,
    "learning_curves": learning_curves,
}


# ---------------------------------------------------------------------------------------
# the schedule study's figure (its numbers: bench/report/schedules.py)


def schedule_figure(task: str, runs: pd.DataFrame, out: Path) -> Path | None:
    """`<metric>_by_variant_schedules.png`: the primary metric per variant (seeds as dots, the mean with its
    95% bootstrap interval), variants sorted best first, the paper's exponential highlighted.
    None where the profile has no finished run. A seed's value is its mean over the runs it
    has in the profile: over the targets of audio; the suites' study has one budget and one
    task setting, which the figure assumes (a profile of several would be pooled)."""
    primary = runs["primary"].iloc[0]
    higher = bool(runs["higher_is_better"].iloc[0])
    ok = runs[(runs["status"] == "ok") & runs[f"metric.{primary}"].notna()]
    if ok.empty:
        return None
    per_seed = ok.groupby(["arch", "seed"])[f"metric.{primary}"].mean().reset_index()
    means = per_seed.groupby("arch")[f"metric.{primary}"].mean().sort_values(ascending=not higher)
    archs = list(means.index)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(archs) + 1.6), layout="constrained")
    rng = np.random.default_rng(0)  # the dots' jitter: the same picture on every rebuild
    for y, arch in enumerate(archs):
        values = per_seed.loc[per_seed["arch"] == arch, f"metric.{primary}"].to_numpy(dtype=float)
        colour = "tab:red" if arch == PAPER else "tab:blue"
        ax.plot(values, y + rng.uniform(-0.15, 0.15, len(values)), ls="", marker="o", markersize=3.5,
                color=colour, alpha=0.55, zorder=2)
        ci = bootstrap_ci(values)
        if ci is not None:
            ax.plot(ci, [y, y], color=colour, lw=2.2, zorder=3)
        ax.plot([values.mean()], [y], ls="", marker="D", markersize=7, color=colour, markeredgecolor="black",
                zorder=4)
    ax.set_yticks(range(len(archs)), [_short(a) for a in archs])
    for label in ax.get_yticklabels():
        if label.get_text() == _short(PAPER):
            label.set_color("tab:red")
            label.set_fontweight("bold")
    ax.invert_yaxis()  # the best on top
    values = per_seed[f"metric.{primary}"].to_numpy(dtype=float)
    if (values > 0).all() and values.max() / values.min() > 50:
        ax.set_xscale("log")
    baseline = f"baseline.{primary}" in ok and ok[f"baseline.{primary}"].notna().any()
    if baseline:
        ax.axvline(float(ok[f"baseline.{primary}"].mean()), color="0.45", ls=(0, (2, 2)), lw=1.2, zorder=1)
    ax.set_xlabel(f"{primary} ({'higher' if higher else 'lower'} is better)")
    ax.grid(axis="x", alpha=0.3)
    title = (f"{task} [{STUDY}]: {primary} per CW-RNN variant, best first. Dots: seeds; diamond: mean; bar: 95% "
             "bootstrap interval; red: the paper's exponential schedule"
             + ("; dashed: trivial baseline" if baseline else ""))
    ax.set_title(_wrap(title, 7.2, TITLE_SIZE - 1), fontsize=TITLE_SIZE - 1)
    return _save(fig, out / f"{primary}_by_variant_{STUDY}.png")  # <plot>_<profile>.png, as the site reads them


def make_plots(task, df, records, suite, out: Path) -> dict[str, list[Path]]:
    """Every plot the suite lists, once per profile; returns {profile: written paths}."""
    names = suite.get("leaderboard", {}).get("plots", ["learning_curves"])
    written = {}
    for profile in sorted(df["profile"].unique()):
        mine = (df["profile"] == profile).to_numpy()
        runs = df[mine]
        runs_records = [r for r, keep in zip(records, mine) if keep]  # same order as runs: plots zip them
        paths = [PLOTS[name](runs, runs_records, suite, out) for name in names]
        if profile == STUDY:  # the schedule study's figure
            paths.append(schedule_figure(task, runs, out))
        written[profile] = [p for p in paths if p is not None]
    return written
