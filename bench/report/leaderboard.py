"""Leaderboards: the results store of a task turned into tables (Markdown, CSV) and
plots. Every number here is computed from results/<task>/runs.jsonl; nothing is typed.

A row's unit of replication is the seed: its std, bootstrap interval and Welch test are
over one value per seed (for tasks aggregated over targets, the seed's mean over the
targets it ran on), so that a row's spread is the spread of what a rerun would vary.

A row with a record made outside this repository (bench/store/verified.py: a plugin's, or
one imported from a bundle) is `external` until `cwbench verify` reproduces it here. External
rows stay in the tables, marked, but are ranked and tested among themselves, apart from the
verified rows, and are never shown in bold: a claim nobody here reproduced never outranks
a result that was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.report.schedules import findings as schedule_findings
from bench.report.stats import bootstrap_ci, welch_p
from bench.report.tuned import SearchReport, profile_order, protocol_line, protocol_table, reports_for
from bench.store.files import atomic_write
from bench.store.records import ABSENT, RunRecord
from bench.store.results import ResultsStore
from bench.store.verified import is_external, reproduced_ids
from bench.suite.suites import LATER_TRAIN_SETTINGS, load_suite
from bench.suite.tuning import TUNING_STORE, tuning_table
from models.errors import UserInputError

NOX_SESSION = {"copy": "copy", "audio": "audio", "timit": "timit", "synthwords": "synthwords"}
SEPARATED = 0.05  # a best row is shown in bold when every other row of its group differs at this p


def known(value):
    """A field's value, None where the record was written before the field existed."""
    return None if value is ABSENT else value


def external_source(external: dict) -> str:
    """Where an external record came from, in a few words: the bundle it was imported from
    and the plugin that made it, as far as its `external` object says."""
    words = []
    while isinstance(external, dict) and external:
        if external.get("imported_from"):
            words.append(f"bundle {external['imported_from']}")
        if external.get("plugin"):
            words.append(f"plugin {external['plugin']}")
        external = external.get("previous")  # a bundle's record that was external before its export
    return ", ".join(words) or "external"


def runs_frame(records: list[RunRecord], reproduced: set[str] | frozenset = frozenset()) -> pd.DataFrame:
    """One row per run: config flattened into columns, metrics as metric.<name>. `external`:
    made outside this repository and not among the `reproduced` run ids (verified.jsonl)."""
    rows = []
    for r in records:
        model = r.model
        external = is_external(r.external) and r.run_id not in reproduced
        row = {
            "run_id": r.run_id, "profile": r.profile, "arch": r.arch, "budget": r.budget,
            "seed": r.seed, "params": r.params, "status": r.status, "wall_time_s": r.wall_time_s,
            "offset": model["offset"], "periods": ",".join(map(str, model["periods"])),
            "shape": (f"g={len(model['periods'])}, k={'/'.join(sorted({str(k) for k in model['module_sizes']}))}"
                      if model["periods"] else f"h={model['hidden_size']}"),
            "hidden": model["hidden_size"], "command": r.command or "",
            "learned": known(r.learned),  # None: recorded before runs were checked against the baseline
            "git_commit": r.git_commit, "torch": r.versions["torch"], "device": r.device,
            "date": r.date, "backend": r.backend or "unrecorded",
            "stopped": known(r.stopped), "epochs_trained": known(r.epochs_trained),
            "external": external, "external_source": external_source(r.external) if external else "",
        }
        row.update({f"task.{k}": (json.dumps(v) if isinstance(v, (list, dict)) else v)
                    for k, v in r.task_params.items()})
        # a setting a record leaves out at its default (LATER_TRAIN_SETTINGS) is shown with that default
        row.update({f"train.{k}": v for k, v in {**LATER_TRAIN_SETTINGS, **r.train}.items()})
        row.update({f"metric.{k}": v for k, v in r.metrics.items()})
        row.update({f"baseline.{k}": v for k, v in (r.baselines or {}).items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    # one primary metric per task: the first record's
    primary = df["primary"] = records[0].primary_metric
    df["higher_is_better"] = records[0].higher_is_better
    if f"metric.{primary}" not in df:  # every run failed: the tables still get their columns
        df[f"metric.{primary}"] = float("nan")
    return df


def setting_columns(df: pd.DataFrame, aggregate_over: list[str]) -> list[str]:
    """Config columns that distinguish rows of the table (seed and the aggregated ones excluded)."""
    skip = {f"task.{k}" for k in aggregate_over}
    return [c for c in df.columns if c.startswith(("task.", "train.")) and c not in skip]


def target_label(values: dict) -> str:
    """A readable name for the aggregated settings of a run: `synth:pluck (e3844c3a)`,
    a content hash cut to its first 8 characters."""
    names = [str(v) for k, v in values.items() if k != "sha256"]
    hashes = [f"({str(v)[:8]})" for k, v in values.items() if k == "sha256"]
    return " ".join(names + hashes)


def _per_seed(ok: pd.DataFrame, metric: str) -> pd.Series:
    """One value per seed: the mean over the targets (or other aggregated settings) the
    seed ran on; without aggregation, each seed's only run."""
    return ok.groupby("seed")[metric].mean().dropna()


def _mean(ok: pd.DataFrame, metric: str, per_seed: pd.Series, aggregated: list[str]) -> float:
    if not aggregated:
        return per_seed.mean()
    # every target weighs the same, however many of its seeds finished
    return ok.groupby(aggregated, dropna=False)[metric].mean().mean()


def _mean_std(mean: float, per_seed: pd.Series) -> str:
    if per_seed.empty:
        return "—"
    if len(per_seed) == 1:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {per_seed.std(ddof=1):.2g}"


def _interval(per_seed: pd.Series) -> str:
    ci = bootstrap_ci(per_seed)
    return "—" if ci is None else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def _p_text(p: float | None) -> str:
    if p is None:
        return "—"
    text = f"{p:.2g}"
    # 0.0496 must not read as "0.05" beside a bold best row
    return f"< {SEPARATED}" if p < SEPARATED and float(text) >= SEPARATED else text


def paper_value(suite: dict, arch: str, budget: int, setting: dict) -> str:
    for entry in suite.get("leaderboard", {}).get("paper", []):
        if entry["arch"] == arch and entry.get("budget", budget) == budget and all(
            setting.get(f"task.{k}") == v for k, v in entry.get("where", {}).items()
        ):
            return f"{entry['value']}" + (f" [{entry['status']}]" if entry.get("status") else "")
    return ""


def leaderboard_table(df: pd.DataFrame, suite: dict, aggregate_over: list[str] | None = None) -> pd.DataFrame:
    """One row per profile x setting x architecture x budget, ranked within each profile,
    task setting and budget. `aggregate_over` (default: the suite's) names the task
    parameters folded into a row; pass [] for one row per target. Columns starting with
    "_" are helpers for the Markdown, not results."""
    board = suite.get("leaderboard", {})
    if aggregate_over is None:
        aggregate_over = board.get("aggregate_over", [])
    aggregated = [f"task.{k}" for k in aggregate_over if f"task.{k}" in df]
    primary = df["primary"].iloc[0]
    settings = setting_columns(df, aggregate_over)
    keys = ["profile", *settings, "arch", "offset", "periods", "budget"]
    metrics = sorted((c for c in df.columns if c.startswith("metric.")), key=lambda c: c != f"metric.{primary}")
    references = sorted(c for c in df.columns if c.startswith("baseline.") and c != f"baseline.{primary}")
    rows = []
    for key, group in df.groupby(keys, dropna=False, sort=False):
        setting = dict(zip(keys, key))
        ok = group[group["status"] == "ok"]
        not_learned = int(ok["learned"].eq(False).sum())
        row = {k: setting[k] for k in keys}
        row["external"] = bool(group["external"].any())
        row["shape"] = "; ".join(sorted(group["shape"].unique()))
        row["params"] = int(round(group["params"].mean()))
        row["deviation"] = f"{(group['params'].mean() - setting['budget']) / setting['budget']:+.1%}"
        for m in metrics:
            name = m.removeprefix("metric.")
            per_seed = _per_seed(ok, m)
            mean = _mean(ok, m, per_seed, aggregated)
            row[name], row[f"_mean.{name}"] = _mean_std(mean, per_seed), mean
            if name == primary:
                if len(ok) and not_learned == len(ok):
                    row[name] += " (not learned)"  # never to pass for a result
                row["ci95"] = _interval(per_seed)
                row["p"] = "—"  # against the best row of the group: _compare_to_best
                row["_per_seed"] = tuple(per_seed)
        row["n"] = len(ok)
        if aggregated:
            row["seeds"] = len(row["_per_seed"])
        row["not_learned"] = not_learned if ok["learned"].notna().any() else "—"
        row["diverged"] = int((group["status"] == "diverged").sum())
        row["failed"] = int((group["status"] == "failed").sum())
        if f"baseline.{primary}" in group:
            row["baseline"] = f"{group[f'baseline.{primary}'].mean():.4g}"
        for column in references:  # the task's other references, where one value holds for the whole row
            values = group[column].dropna().unique()
            row[f"baseline_{column.removeprefix('baseline.')}"] = f"{values[0]:.4g}" if len(values) == 1 else None
        paper = paper_value(suite, setting["arch"], setting["budget"], setting)
        if paper or board.get("paper"):
            row["paper"] = paper
        row["mean_wall_s"] = round(group["wall_time_s"].mean(), 1)
        rows.append(row)
    higher = bool(df["higher_is_better"].iloc[0])
    # rank within a task setting and budget; train settings may differ per architecture.
    # External rows come after the verified ones of their group and are compared apart.
    groups = ["profile", *(c for c in settings if c.startswith("task.")), "budget"]
    table = pd.DataFrame(rows).sort_values([*groups, "external", f"_mean.{primary}"],
                                           ascending=[True] * len(groups) + [True, not higher], kind="stable")
    table = _compare_to_best(table.reset_index(drop=True), [*groups, "external"], primary, higher)
    table.loc[table["external"], "_separated"] = False  # never bold: nobody here reproduced it
    return table


def _compare_to_best(table: pd.DataFrame, groups: list[str], primary: str, higher: bool) -> pd.DataFrame:
    """Welch p of every row against the best row (by mean) of its group; the best row is
    `_separated` when every other row of the group differs from it at p < SEPARATED."""
    table["_separated"] = False
    for _, group in table.groupby(groups, dropna=False, sort=False):
        means = group[f"_mean.{primary}"]
        if means.isna().all():
            continue
        best = means.idxmax() if higher else means.idxmin()  # a tie: the first in rank order
        others = [i for i in group.index if i != best]
        p = {i: welch_p(table.at[i, "_per_seed"], table.at[best, "_per_seed"]) for i in others}
        for i in others:
            table.at[i, "p"] = _p_text(p[i])
        table.at[best, "p"] = "best"
        # a row that cannot be tested (too few seeds) is not one the best is separated from
        table.at[best, "_separated"] = bool(others) and all(v is not None and v < SEPARATED for v in p.values())
    return table


def results_only(table: pd.DataFrame) -> pd.DataFrame:
    """The table as written to CSV: without the helper columns."""
    return table.drop(columns=[c for c in table.columns if c.startswith("_")])


def _varying(table: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if c in table and table[c].astype(str).nunique() > 1]


def _short(view: pd.DataFrame) -> pd.DataFrame:
    return view.rename(columns={c: c.removeprefix("task.").removeprefix("train.") for c in view.columns})


def reproduce_commands(df: pd.DataFrame, task: str, profile: str) -> list[str]:
    flag = "" if profile == "quick" else f" --profile {profile}"
    default = (f"nox -s {NOX_SESSION[task]}" + (f" --{flag}" if flag else "") if task in NOX_SESSION
               else f"cwbench run {task}{flag}")
    recorded = sorted({c for c in df["command"] if c})
    return [default] if not recorded else recorded


def _header(df: pd.DataFrame, suite: dict, task: str, source: str) -> list[str]:
    aggregate_over = suite.get("leaderboard", {}).get("aggregate_over", [])
    primary = df["primary"].iloc[0]
    lines = [f"# Leaderboard — {suite.get('title', task)}", "",
             f"Generated by `cwbench leaderboard {task}` from `{source}` "
             f"({len(df)} runs); regenerate, never edit by hand.", "",
             f"Ranked by **{primary}** ({'higher' if df['higher_is_better'].iloc[0] else 'lower'} is better): "
             "mean ± sample std over seeds; `ci95` = 95% bootstrap interval of that mean (percentile, "
             "9999 resamples, fixed seed); n = finished runs.", "",
             "`p` = two-sided Welch t-test of the row's per-seed values against the best row of its profile, "
             "task setting and budget (`best`); — = no test possible (fewer than 2 seeds on a side, "
             "or no spread on either side).", ""]
    if aggregate_over:
        what, unit = target_label({k: k for k in aggregate_over}), aggregate_over[0]
        lines += [f"Aggregated over {what}, the seed being the unit of replication: for each seed the metric "
                  f"is first averaged over the {unit}s it ran on, and std, `ci95` and `p` are over these "
                  f"per-seed averages (`seeds` = their number); the mean is the mean over {unit}s of each "
                  f"{unit}'s mean over seeds. Each profile's \"Per target\" table shows every {unit} alone.", ""]
    lines += [f"Reproducing a row: bit for bit only on the same CPU model, thread count and package versions "
              "(each record's `machine` and `versions`); anywhere else statistically, within the row's spread. "
              f"`cwbench verify {task}` re-runs each row and says which.", ""]
    if any(c.startswith("baseline.") and c != f"baseline.{primary}" for c in df.columns):
        lines += ["`baseline` = the task's trivial baseline of the primary metric; `baseline_<name>` = the task's "
                  "other references for that row's setting, where a row has one value (the copy task: the "
                  "cross-entropy of a memoryless guess per recalled symbol, ln 8, and per step of the whole "
                  "sequence, 10 ln 8 / (D + 20)).", ""]
    lines += ["`not_learned` = finished runs whose primary metric did not beat the task's trivial baseline by "
              "its margin (— = not recorded by these runs); a row where no run learned has its metric marked "
              "`(not learned)`.", ""]
    return lines


def _per_target_section(part: pd.DataFrame, runs: pd.DataFrame, suite: dict) -> list[str]:
    aggregate_over = suite["leaderboard"]["aggregate_over"]
    primary = runs["primary"].iloc[0]
    part = part.assign(target=[target_label({k: row[f"task.{k}"] for k in aggregate_over if f"task.{k}" in part})
                               for _, row in part.iterrows()]).sort_values("target", kind="stable")
    settings = setting_columns(runs, aggregate_over)
    shown = ["arch", *_varying(part, ["offset"]), *_varying(part, settings), "budget", "target",
             primary, "ci95", "n", "not_learned"]
    view = _short(part.assign(arch=arch_cells(part, bold=False))[shown])
    return ["### Per target", "", view.to_markdown(index=False), ""]


EXTERNAL_MARK = " (external)"


def arch_cells(part: pd.DataFrame, bold: bool = True) -> list[str]:
    """The arch column as shown: bold for a separated best row (where `bold`), marked for an
    external one."""
    separated = part["_separated"] if bold else [False] * len(part)
    return [f"**{a}**" if best else f"{a}{EXTERNAL_MARK}" if external else a
            for a, best, external in zip(part["arch"], separated, part["external"])]


def _external_note(part: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """The line under a table with external rows: what the mark means, and where they came from."""
    if not part["external"].any():
        return []
    sources = sorted(set(runs.loc[runs["external"], "external_source"]))
    return [f"{EXTERNAL_MARK.strip()}: a row with runs made outside this repository ({'; '.join(sources)}) that "
            "`cwbench verify` has not reproduced here. External rows are ranked and tested (`best`, `p`) among "
            "themselves, apart from the verified rows, and are never bold; see docs/protocol.md "
            "(External results).", ""]


def _findings(part: pd.DataFrame, runs: pd.DataFrame, primary: str, higher: bool) -> list[str]:
    """What a reader must not miss, computed from the runs: rows where nothing learned, how
    runs stopped, and whether the paper's order of architectures came out."""
    lines = []
    dead = part[part["not_learned"].astype(str) == part["n"].astype(str)]
    dead = dead[dead["n"] > 0]
    if len(dead):
        lines.append("Did not learn (no run beat the trivial baseline): "
                     + ", ".join(f"{a}{EXTERNAL_MARK if external else ''} at budget {b}"
                                 for a, b, external in zip(dead["arch"], dead["budget"], dead["external"])) + ".")
    epochs = runs.dropna(subset=["epochs_trained"]) if "epochs_trained" in runs else runs.iloc[:0]
    if len(epochs):
        stopped = epochs["stopped"].value_counts()
        medians = epochs.groupby("arch", sort=False)["epochs_trained"].median()
        lines.append(f"Early stopping: {stopped.get('patience', 0)} of {len(epochs)} runs stopped by patience, "
                     f"{stopped.get('cap', 0)} at the cap; median epochs trained: "
                     + ", ".join(f"{a} {m:g}" for a, m in medians.items()) + ".")
    with_paper = part[(part["paper"].astype(str) != "") & ~part["external"]] if "paper" in part else part.iloc[:0]
    better_first = " > " if higher else " < "
    for budget, group in with_paper.groupby("budget"):
        paper = group.assign(_paper=group["paper"].str.extract(r"^([0-9.]+)")[0].astype(float))
        ours = better_first.join(group.sort_values(f"_mean.{primary}", ascending=not higher)["arch"])
        theirs = better_first.join(paper.sort_values("_paper", ascending=not higher)["arch"])
        verdict = "the same order" if ours == theirs else "a different order"
        lines.append(f"Against the paper at budget {budget}: ours {ours}; paper {theirs} ({verdict}; the paper's "
                     "values are to check, and its data are not ours).")
    lines += schedule_findings(part, primary, higher)  # a `schedules` profile's study (bench/report/schedules.py)
    return ["### Findings", "", *[f"- {line}" for line in lines], ""] if lines else []


def reference_columns(part: pd.DataFrame) -> list[str]:
    """The trivial baseline and the task's other references (a copy row's memoryless recall
    and cross-entropy per step, which depend on its delay), where each row has one value."""
    others = [c for c in part.columns if c.startswith("baseline_") and part[c].notna().all()]
    return [*(["baseline"] if "baseline" in part else []), *others]


def _tuning_section(tuning: list[dict], runs: pd.DataFrame, primary: str) -> list[str]:
    """The profile's learning-rate tuning (results/<task>/tuning.jsonl): every rate of the
    grid with its score, and the one the runs above used."""
    tuning = [r for r in tuning if not r.get("trial")]  # a search's trials have a section of their own
    if not tuning:
        return []
    used = {arch: set(group["train.lr"]) for arch, group in runs.groupby("arch")}
    table = tuning_table(tuning, used)
    seeds = len({r["seed"] for r in tuning})
    return ["### Learning-rate tuning", "",
            f"`cwbench tune` ({len(tuning)} runs in `tuning.jsonl`): every architecture on the same grid, "
            f"{seeds} seeds, scored on the final validation {primary} of the tuning task (never the test set: "
            "see the notes for what the validation data are); the best mean is chosen (✓ = the rate the runs "
            "above used).", "", table.to_markdown(index=False), ""]


def _search_section(report: SearchReport) -> list[str]:
    """A searched profile's search: one row per architecture, the sentences that must not be
    missed, and where its every trial is written."""
    declared = report.profile.search
    lines = ["### Search", "",
             f"`cwbench tune` ({sum(len(t.runs) for t in report.trials_list)} runs in `tuning.jsonl`): for every "
             f"architecture {report.studies} studies x {report.trials} trials ({declared.sampler} sampler, seeded), "
             f"each trial {declared.seeds} run(s) per tuning setting at budget {report.budget}, scored on the "
             f"validation {report.primary} of the tuning data (never the test data: "
             + "; ".join(", ".join(f"{k}={v}" for k, v in d.items() if k != "sha256") or "the task's validation data"
                         for d in report.tuning_data)
             + "); a diverged run scores the trivial baseline. The chosen trial is the median study's best "
             "(median of studies); its settings are the columns below, and the rows above train them with "
             f"seeds of their own. Every trial: `trials_{report.profile_name}.csv`; the search space and the "
             f"choices: `search_{report.profile_name}.json`.", "",
             report.table().to_markdown(index=False), ""]
    lines += [f"- {line}" for line in report.sentences()]
    return lines + ([""] if report.sentences() else [])


def _protocol_section(protocol: pd.DataFrame, primary: str, higher: bool) -> list[str]:
    if protocol is None or not len(protocol):
        return []
    view = protocol.assign(ratio=[f"{r:.3g}" if pd.notna(r) else "—" for r in protocol["ratio"]])
    direction = "below" if not higher else "above"
    return ["## Protocol: tuned against the other recipes", "",
            f"Each architecture x budget trained under a searched profile and under another profile on the same "
            f"task settings (and the same targets): mean {primary} ± std over seeds of each, `ratio` = tuned mean / "
            f"reference mean; {primary} is {'higher' if higher else 'lower'}-is-better, so a ratio {direction} 1 "
            "means the tuned protocol did better (`better` names the profile). In `protocol.csv`.", "",
            view.to_markdown(index=False), ""]


def markdown(table: pd.DataFrame, df: pd.DataFrame, suite: dict, task: str,
             plots: dict[str, list[Path]], per_target: pd.DataFrame | None = None,
             tuning: list[dict] | None = None, left_out: list | None = None, source: str = "",
             searches: dict[str, SearchReport] | None = None, protocol: pd.DataFrame | None = None) -> str:
    board = suite.get("leaderboard", {})
    aggregate_over = board.get("aggregate_over", [])
    primary = df["primary"].iloc[0]
    lines = _header(df, suite, task, source or f"results/{task}/runs.jsonl")
    if left_out:
        lines += [f"**Left out: {len(left_out)} stored lines that are not valid run records** (not counted "
                  "anywhere below): " + "; ".join(f"line {x.line}: {x.reason}" for x in left_out), ""]
    tuning = tuning or []
    searches = searches or {}
    order = profile_order(table["profile"].unique(), suite)
    if len(order) > 1:
        lines += ["Profiles, each its own table (never pooled), the headline first:", "",
                  *[f"- {protocol_line(suite, p, searches.get(p))}" for p in order], ""]
    for profile in order:
        part = table[table["profile"] == profile]
        runs = df[df["profile"] == profile]
        settings = setting_columns(runs, aggregate_over)
        shown = ["arch", *_varying(part, ["offset"]), *_varying(part, settings), "budget", "params",
                 "deviation", "shape"]
        metrics = sorted((m.removeprefix("metric.") for m in df.columns if m.startswith("metric.")),
                         key=lambda m: m != primary)
        extra = [*reference_columns(part), *(["paper"] if "paper" in part else [])]
        counts = ["n", *(["seeds"] if "seeds" in part else []), "not_learned", "diverged", "failed"]
        view = part.assign(arch=arch_cells(part))
        view = _short(view[[*shown, primary, "ci95", "p", *metrics[1:], *extra, *counts, "mean_wall_s"]])
        lines += [f"## Profile `{profile}`", "", f"Protocol — {protocol_line(suite, profile, searches.get(profile))}",
                  "", "Reproduce:", ""]
        lines += [f"    {c}" for c in reproduce_commands(runs, task, profile)]
        lines += ["", view.to_markdown(index=False), "",
                  f"Bold arch: the best row, separated from every other row of its task setting and budget at "
                  f"p < {SEPARATED} (Welch); a best row not in bold is tied with at least one other.", ""]
        lines += _external_note(part, runs)
        fixed = {c.removeprefix("task.").removeprefix("train."): runs[c].iloc[0]
                 for c in settings if c not in _varying(part, settings)}
        if fixed:
            lines += ["Held fixed: " + ", ".join(f"{k}={v}" for k, v in fixed.items()), ""]
        aggregated = [k for k in aggregate_over if f"task.{k}" in runs]
        if aggregated:
            names = sorted({target_label({k: row[f"task.{k}"] for k in aggregated}) for _, row in runs.iterrows()})
            lines += [f"Aggregated over {target_label({k: k for k in aggregated})}: "
                      + ", ".join(f"`{n}`" for n in names), ""]
        if per_target is not None:
            lines += _per_target_section(per_target[per_target["profile"] == profile], runs, suite)
        lines += _tuning_section([r for r in tuning if r["profile"] == profile], runs, primary)
        if profile in searches:
            lines += _search_section(searches[profile])
        lines += _findings(part, runs, primary, bool(df["higher_is_better"].iloc[0]))
        if plots.get(profile):
            lines += ["### Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots[profile]] + [""]
    lines += _protocol_section(protocol, primary, bool(df["higher_is_better"].iloc[0]))
    notes = board.get("notes", [])
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Provenance", "",
              f"- commits: {', '.join(sorted(df['git_commit'].unique()))}",
              f"- torch: {', '.join(sorted(df['torch'].unique()))}",
              f"- devices: {', '.join(sorted(df['device'].unique()))}",
              f"- recurrence implementations: {', '.join(sorted(df['backend'].unique()))}",
              f"- run dates: {df['date'].min()} … {df['date'].max()}"]
    if df["external"].any():
        lines.append(f"- external runs, not reproduced here: {int(df['external'].sum())} "
                     f"({'; '.join(sorted(set(df.loc[df['external'], 'external_source'])))})")
    return "\n".join([*lines, ""])


def build_leaderboard(task: str, results_dir: Path, log=print, wandb: bool = False) -> list[Path]:
    """Writes results/<task>/leaderboard.{md,csv} (and leaderboard_per_target.csv for a task
    aggregated over targets) and one set of plots per profile; returns the written paths.
    `wandb`: also log each profile's table and figures to a W&B run of job type `leaderboard`."""
    from bench.report.plots import make_plots  # matplotlib only when plotting

    suite = load_suite(task)  # a task name, never a path: everything is written under results_dir/<task>
    out = Path(results_dir) / task
    store = ResultsStore(out / "runs.jsonl")
    records, left_out = store.scan()
    if not records:
        raise UserInputError(f"no valid runs stored for task {task} in {store.path}: run `cwbench run {task}` first"
                             + (f" ({len(left_out)} lines left out: {left_out[0].reason})" if left_out else ""))
    for line in left_out:
        log(f"warning: {store.path} line {line.line} left out of the leaderboard: {line.reason}")
    records = [RunRecord.from_dict(r) for r in records]
    df = runs_frame(records, reproduced_ids(store.path))
    table = leaderboard_table(df, suite)
    written = [out / "leaderboard.md", out / "leaderboard.csv"]
    atomic_write(out / "leaderboard.csv", results_only(table).to_csv(index=False))
    per_target = None
    if suite.get("leaderboard", {}).get("aggregate_over"):
        per_target = leaderboard_table(df, suite, aggregate_over=[]).drop(columns=["p", "paper"], errors="ignore")
        atomic_write(out / "leaderboard_per_target.csv", results_only(per_target).to_csv(index=False))
        written.append(out / "leaderboard_per_target.csv")
    plots = make_plots(task, df, records, suite, out)
    tuning, _ = ResultsStore(out / TUNING_STORE).scan()
    searches = reports_for(task, suite, tuning, [r.to_dict() for r in records])
    for name, report in searches.items():
        files = write_search_files(report, suite, out)
        written += [p for p in files if p.suffix != ".png"]
        plots.setdefault(name, []).extend(p for p in files if p.suffix == ".png")
    drawn = {p for paths in plots.values() for p in paths}
    for stale in set(out.glob("*.png")) - drawn:  # the folder holds generated plots only: none may linger
        stale.unlink()
    protocol = protocol_table(table, df, suite, list(searches) or searched_profiles(suite, table))
    if len(protocol):
        atomic_write(out / "protocol.csv", protocol.to_csv(index=False))
        written.append(out / "protocol.csv")
    source = store.path if Path(results_dir) != Path("results") else f"results/{task}/runs.jsonl"
    atomic_write(out / "leaderboard.md", markdown(table, df, suite, task, plots, per_target, tuning,
                                                  left_out=left_out, source=str(source), searches=searches,
                                                  protocol=protocol))
    written += sorted(drawn)
    log(f"wrote {', '.join(str(p) for p in written)}")
    if wandb:
        log_to_wandb(task, table, per_target, plots, df, str(source), log)
    return written


def searched_profiles(suite: dict, table: pd.DataFrame) -> list[str]:
    """The stored profiles that the suite file gives a search (the headline ones)."""
    return [p for p in profile_order(table["profile"].unique(), suite)
            if (suite.get("profiles", {}).get(p) or {}).get("search")]


def write_search_files(report: SearchReport, suite: dict, out: Path) -> list[Path]:
    """search_<profile>.json, trials_<profile>.csv, expected_best_vs_trials_<profile>.csv and
    its plot (the plot last)."""
    from bench.report.plots import expected_best_plot

    name = report.profile_name
    paths = [out / f"search_{name}.json", out / f"trials_{name}.csv", out / f"expected_best_vs_trials_{name}.csv"]
    atomic_write(paths[0], json.dumps(report.as_json(), indent=2, sort_keys=False, default=str) + "\n")
    atomic_write(paths[1], report.trials_frame().to_csv(index=False))
    frame = report.expected_best_frame()
    atomic_write(paths[2], frame.to_csv(index=False))
    plot = expected_best_plot(frame, report, suite, out)
    return [*paths, *([plot] if plot else [])]


def log_to_wandb(task: str, table: pd.DataFrame, per_target: pd.DataFrame | None, plots: dict[str, list[Path]],
                 df: pd.DataFrame, source: str, log=print) -> str:
    """The leaderboard just written, on the W&B dashboard beside the runs (bench/sweep/wandb_log.py)."""
    from bench.sweep.wandb_log import PROJECT, log_leaderboard

    profiles = sorted(table["profile"].unique())
    tables = {p: results_only(table[table["profile"] == p]) for p in profiles}
    targets = ({p: results_only(per_target[per_target["profile"] == p]) for p in profiles}
               if per_target is not None else None)
    config = {"task": task, "source": source, "runs": len(df), "profiles": profiles,
              "commits": sorted(df["git_commit"].unique()), "external_runs": int(df["external"].sum())}
    run_id = log_leaderboard(task, tables, plots, targets, config)
    log(f"logged the leaderboard of {task} to W&B project {PROJECT} (run {run_id}, job type leaderboard)")
    return run_id
