"""Leaderboards: the results store of a task turned into tables (Markdown, CSV) and
plots. Every number here is computed from results/<task>/runs.jsonl; nothing is typed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.store import ResultsStore
from bench.suite import load_suite
from models.errors import UserInputError

NOX_SESSION = {"copy": "copy", "audio": "audio", "timit": "timit", "synthwords": "synthwords"}


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run: config flattened into columns, metrics as metric.<name>."""
    rows = []
    for r in records:
        model = r["model"]
        row = {
            "run_id": r["run_id"], "profile": r["profile"], "arch": r["arch"], "budget": r["budget"],
            "seed": r["seed"], "params": r["params"], "status": r["status"], "wall_time_s": r["wall_time_s"],
            "offset": model["offset"], "periods": ",".join(map(str, model["periods"])),
            "shape": (f"g={len(model['periods'])}, k={'/'.join(sorted({str(k) for k in model['module_sizes']}))}"
                      if model["periods"] else f"h={model['hidden_size']}"),
            "hidden": model["hidden_size"], "command": r.get("command", ""),
        }
        row.update({f"task.{k}": (json.dumps(v) if isinstance(v, (list, dict)) else v)
                    for k, v in r["task_params"].items()})
        row.update({f"train.{k}": v for k, v in r["train"].items()})
        row.update({f"metric.{k}": v for k, v in r["metrics"].items()})
        row.update({f"baseline.{k}": v for k, v in r.get("baselines", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def setting_columns(df: pd.DataFrame, aggregate_over: list[str]) -> list[str]:
    """Config columns that distinguish rows of the table (seed and the aggregated ones excluded)."""
    skip = {f"task.{k}" for k in aggregate_over}
    return [c for c in df.columns if c.startswith(("task.", "train.")) and c not in skip]


def _mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    if len(values) == 1:
        return f"{values.iloc[0]:.4g}"
    return f"{values.mean():.4g} ± {values.std(ddof=1):.2g}"


def paper_value(suite: dict, arch: str, budget: int, setting: dict) -> str:
    for entry in suite.get("leaderboard", {}).get("paper", []):
        if entry["arch"] == arch and entry.get("budget", budget) == budget and all(
            setting.get(f"task.{k}") == v for k, v in entry.get("where", {}).items()
        ):
            return f"{entry['value']}" + (f" [{entry['status']}]" if entry.get("status") else "")
    return ""


def leaderboard_table(df: pd.DataFrame, suite: dict) -> pd.DataFrame:
    board = suite.get("leaderboard", {})
    primary = df["primary"].iloc[0] if "primary" in df else None
    settings = setting_columns(df, board.get("aggregate_over", []))
    keys = ["profile", *settings, "arch", "offset", "periods", "budget"]
    metrics = [c for c in df.columns if c.startswith("metric.")]
    if primary:  # primary metric first
        metrics.sort(key=lambda c: c != f"metric.{primary}")
    rows = []
    for key, group in df.groupby(keys, dropna=False, sort=False):
        setting = dict(zip(keys, key))
        ok = group[group["status"] == "ok"]
        row = {k: setting[k] for k in keys}
        row["shape"] = "; ".join(sorted(group["shape"].unique()))
        row["params"] = int(round(group["params"].mean()))
        row["deviation"] = f"{(group['params'].mean() - setting['budget']) / setting['budget']:+.1%}"
        for m in metrics:
            row[m.removeprefix("metric.")] = _mean_std(ok[m])
            row[m.removeprefix("metric.") + "_mean"] = ok[m].mean()
        row["n"] = len(ok)
        row["diverged"] = int((group["status"] == "diverged").sum())
        row["failed"] = int((group["status"] == "failed").sum())
        if primary and f"baseline.{primary}" in group:
            row["baseline"] = f"{group[f'baseline.{primary}'].mean():.4g}"
        paper = paper_value(suite, setting["arch"], setting["budget"], setting)
        if paper or board.get("paper"):
            row["paper"] = paper
        row["mean_wall_s"] = round(group["wall_time_s"].mean(), 1)
        rows.append(row)
    table = pd.DataFrame(rows)
    if primary and f"{primary}_mean" in table:
        higher = bool(df["higher_is_better"].iloc[0])
        # rank within a task setting and budget; train settings may differ per architecture
        tasks = [c for c in settings if c.startswith("task.")]
        table = table.sort_values(["profile", *tasks, "budget", f"{primary}_mean"],
                                  ascending=[True] * (len(tasks) + 2) + [not higher], kind="stable")
    return table


def _varying(table: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if c in table and table[c].astype(str).nunique() > 1]


def reproduce_commands(df: pd.DataFrame, task: str, profile: str) -> list[str]:
    flag = "" if profile == "quick" else f" --profile {profile}"
    default = (f"nox -s {NOX_SESSION[task]}" + (f" --{flag}" if flag else "") if task in NOX_SESSION
               else f"cwbench run {task}{flag}")
    recorded = sorted({c for c in df["command"] if c})
    return [default] if not recorded else recorded


def markdown(table: pd.DataFrame, df: pd.DataFrame, suite: dict, task: str, plots: list[Path]) -> str:
    board = suite.get("leaderboard", {})
    primary = df["primary"].iloc[0]
    over = " and ".join(["seeds", *(["/".join(board["aggregate_over"])] if board.get("aggregate_over") else [])])
    lines = [f"# Leaderboard — {suite.get('title', task)}", "",
             f"Generated by `cwbench leaderboard {task}` from `results/{task}/runs.jsonl` "
             f"({len(df)} runs); regenerate, never edit by hand.", "",
             f"Ranked by **{primary}** ({'higher' if df['higher_is_better'].iloc[0] else 'lower'} is better): "
             f"mean ± sample std over {over}"
             + "; n = finished runs.", ""]
    for profile, part in table.groupby("profile", sort=True):
        runs = df[df["profile"] == profile]
        settings = setting_columns(runs, board.get("aggregate_over", []))
        shown = ["arch", *_varying(part, ["offset"]), *_varying(part, settings), "budget", "params",
                 "deviation", "shape"]
        metrics = sorted((m.removeprefix("metric.") for m in df.columns if m.startswith("metric.")),
                         key=lambda m: m != primary)
        extra = [c for c in ("baseline", "paper") if c in part]
        view = part[shown + metrics + extra + ["n", "diverged", "failed", "mean_wall_s"]]
        view = view.rename(columns={c: c.removeprefix("task.").removeprefix("train.") for c in view.columns})
        lines += [f"## Profile `{profile}`", "", "Reproduce:", ""]
        lines += [f"    {c}" for c in reproduce_commands(runs, task, profile)]
        lines += ["", view.to_markdown(index=False), ""]
        fixed = {c.removeprefix("task.").removeprefix("train."): runs[c].iloc[0]
                 for c in settings if c not in _varying(part, settings)}
        if fixed:
            lines += ["Held fixed: " + ", ".join(f"{k}={v}" for k, v in fixed.items()), ""]
        aggregated = [f"task.{k}" for k in board.get("aggregate_over", []) if f"task.{k}" in runs]
        for column in aggregated:
            lines += [f"Aggregated over {column.removeprefix('task.')}: "
                      + ", ".join(f"`{v}`" for v in sorted(runs[column].astype(str).unique())), ""]
    notes = board.get("notes", [])
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Provenance", "",
              f"- commits: {', '.join(sorted(df['git_commit'].unique()))}",
              f"- torch: {', '.join(sorted(df['torch'].unique()))}",
              f"- devices: {', '.join(sorted(df['device'].unique()))}",
              f"- recurrence implementations: {', '.join(sorted(df['backend'].unique()))}",
              f"- run dates: {df['date'].min()} … {df['date'].max()}", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


def build_leaderboard(task: str, results_dir: Path, log=print) -> list[Path]:
    """Writes results/<task>/leaderboard.{md,csv} and plots; returns the written paths."""
    from bench.plots import make_plots  # matplotlib only when plotting

    out = Path(results_dir) / task
    records = ResultsStore(out / "runs.jsonl").load()
    if not records:
        raise UserInputError(f"no runs stored for task {task} in {out}: run `cwbench run {task}` first")
    suite = load_suite(task)
    df = runs_frame(records)
    df["primary"] = records[0]["primary_metric"]
    df["higher_is_better"] = records[0]["higher_is_better"]
    df["git_commit"] = [r["git_commit"] for r in records]
    df["torch"] = [r["versions"]["torch"] for r in records]
    df["device"] = [r["device"] for r in records]
    df["date"] = [r["date"] for r in records]
    df["backend"] = [r.get("backend", "unrecorded") for r in records]
    table = leaderboard_table(df, suite)
    plots = make_plots(task, df, records, suite, out)
    csv = table.drop(columns=[c for c in table.columns if c.endswith("_mean")])
    csv.to_csv(out / "leaderboard.csv", index=False)
    (out / "leaderboard.md").write_text(markdown(table, df, suite, task, plots))
    written = [out / "leaderboard.md", out / "leaderboard.csv", *plots]
    log(f"wrote {', '.join(str(p) for p in written)}")
    return written
