"""`cwbench verify TASK`: re-run a sample of a committed leaderboard's runs and say
whether each row reproduces.

Two meanings of "reproduces", both checked:
- bitwise: on the same CPU model, thread count and package versions (the record's
  `machine` and `versions`), a rerun of a config and seed gives identical metrics;
- statistically: anywhere else, the mean of the K reruns of a row falls inside the
  interval that a mean of K runs of that row should fall in: the 95% percentile
  bootstrap interval of the mean of K seeds drawn from the row's committed seeds (for
  K = all seeds, the row's own ci95; for K = 1, about the range of its seeds).

A row here is the finest one: profile x task setting (one audio target, one delay ...)
x architecture x budget x training settings. Each run is rebuilt from the command
recorded with it (the one the leaderboard prints), so what is checked is what a reader
would run; its run id must come out the same, or the row is reported as not rebuilt.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.store import ResultsStore
from models.errors import UserInputError

CONFIDENCE = 0.95
RESAMPLES = 9999
CLOSE = 1e-6  # relative: "same within tolerance" (float noise of another CPU or thread count)


@dataclass
class Row:
    key: tuple
    records: list[dict]  # the committed ok runs, by seed
    label: str


def rows_of(records: list[dict]) -> list[Row]:
    varying = varying_params(records)
    rows: dict[tuple, list[dict]] = {}
    for r in records:
        if r["status"] != "ok":
            continue
        key = (r["profile"], json.dumps(r["task_params"], sort_keys=True), r["arch"], r["budget"],
               json.dumps(r["train"], sort_keys=True))
        rows.setdefault(key, []).append(r)
    out = []
    for key, group in rows.items():
        group.sort(key=lambda r: r["seed"])
        first = group[0]
        setting = ", ".join(f"{k}={v}" for k, v in first["task_params"].items()
                            if k in varying and k != "sha256")
        out.append(Row(key, group, f"{first['profile']} {first['arch']} budget={first['budget']}"
                                   + (f" {setting}" if setting else "")))
    return out


def varying_params(records: list[dict]) -> set[str]:
    seen: dict[str, set] = {}
    for r in records:
        for k, v in r["task_params"].items():
            seen.setdefault(k, set()).add(json.dumps(v, sort_keys=True))
    return {k for k, values in seen.items() if len(values) > 1}


def interval_of_mean(values: list[float], k: int) -> tuple[float, float]:
    """Where the mean of k runs of this row should fall: percentile bootstrap of the mean
    of k draws from the committed values (fixed seed: the same answer every time)."""
    rng = np.random.default_rng(0)
    draws = rng.choice(np.asarray(values, dtype=float), size=(RESAMPLES, k), replace=True).mean(axis=1)
    alpha = (1 - CONFIDENCE) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def command_args(command: str, task: str, profile: str) -> list[str]:
    """The `cwbench run` arguments of a recorded command ("nox -s audio -- ...", "cwbench run
    audio ..."); a record without one is taken to come from the profile's defaults."""
    words = shlex.split(command)
    if words[:2] == ["nox", "-s"]:
        rest = words[words.index("--") + 1:] if "--" in words else []
        return ["run", task, *rest]
    if words[:2] == ["cwbench", "run"]:
        return words[1:]
    return ["run", task, "--profile", profile]


def rebuild(records: list[dict], task: str, results_dir: Path, read_run_command) -> dict[str, tuple]:
    """run_id -> (config, task object) for every run that the records' commands declare.
    `read_run_command(words)` -> (parsed arguments, profile) is the command line's own reading
    of `cwbench run` arguments (bench/cli.py, which imports this module)."""
    from bench.suite import resolve, run_id
    from bench.tuning import needs_tuning, tuned_rates

    plan = {}
    for command, profile_name in sorted({(r.get("command", ""), r["profile"]) for r in records}):
        args, profile = read_run_command(command_args(command, task, profile_name))
        args.results = results_dir  # tuned rates come from the committed tuning store beside the runs
        tuned = tuned_rates(task, args.profile, profile, results_dir) if needs_tuning(profile) else None
        for config, task_object in resolve(task, args.profile, profile, tuned):
            plan[run_id(config)] = (config, task_object)
    return plan


def run_threads(record: dict) -> int | None:
    """The torch thread count one run was made with (its machine record, or its device string)."""
    machine = record.get("machine") or {}
    if "torch_threads" in machine:
        return machine["torch_threads"]
    device = record.get("device", "")
    if device.startswith("cpu (") and device.endswith(" threads)"):
        return int(device.rsplit(",", 1)[1].split()[0])
    return None


def recorded_threads(records: list[dict]) -> int | None:
    """The torch thread count the runs were made with, if they agree on one: sums split
    over another count of threads give other bits."""
    counts = {run_threads(r) for r in records} - {None}
    return counts.pop() if len(counts) == 1 else None


def pin_threads(threads: int) -> None:
    """Run on the recorded thread count, set the way the sweeps set it: through the
    environment, before torch and numba are loaded, so that no OpenMP pool is started with
    more workers (idle ones spin beside the working thread), then in torch as well."""
    import sys

    if "torch" not in sys.modules:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


def compare(old: dict, new: dict | None) -> str:
    if new is None or new["status"] != "ok":
        return "not rerun" if new is None else new["status"]
    if new["metrics"] == old["metrics"]:
        return "bitwise"
    close = all(abs(new["metrics"].get(k, np.nan) - v) <= CLOSE * max(1.0, abs(v)) for k, v in old["metrics"].items())
    return "close" if close else "different"


def verify(task: str, results_dir: Path, scratch: Path, read_run_command, sample: int = 1, profile: str | None = None,
           log=print) -> int:
    from bench.runner import run_suite

    store = ResultsStore(Path(results_dir) / task / "runs.jsonl")
    records = [r for r in store.load() if profile is None or r["profile"] == profile]
    if not records:
        raise UserInputError(f"no stored runs to verify for task {task}"
                             + (f" profile {profile}" if profile else "") + f" in {store.path}")
    threads = recorded_threads(records)
    if threads:
        pin_threads(threads)  # first: before anything loads torch
    rows = rows_of(records)
    chosen = {id(row): row.records[:sample] for row in rows}
    plan = rebuild(records, task, Path(results_dir), read_run_command)
    missing = {r["run_id"] for picks in chosen.values() for r in picks if r["run_id"] not in plan}
    runs = [r for picks in chosen.values() for r in picks if r["run_id"] in plan]
    log(f"verify {task}: {len(rows)} rows, rerunning {len(runs)} runs into {scratch}, each on the thread "
        "count it was recorded with" + (f" ({threads})" if threads else ""))
    # each rerun on the implementation its record names (auto may choose otherwise today)
    recorded = {r["run_id"]: r["backend"] for r in runs if r.get("backend")}
    by_threads: dict[int | None, list] = {}
    for picks in chosen.values():
        for r in picks:
            if r["run_id"] in plan:
                by_threads.setdefault(run_threads(r), []).append(plan[r["run_id"]])
    for count, group in by_threads.items():
        if count:
            import torch

            torch.set_num_threads(count)
        run_suite(group, scratch, command=f"cwbench verify {task} --sample {sample}", log=log,
                  implementations=recorded)
    fresh = {r["run_id"]: r for r in ResultsStore(Path(scratch) / task / "runs.jsonl").load()}

    failures = 0
    primary = records[0]["primary_metric"]
    width = max(len(row.label) for row in rows)
    log(f"\n{'row':<{width}}  {'reruns':<12} {primary + ' (new)':>14}  {'interval of their mean':<22}  verdict")
    for row in rows:
        picks = chosen[id(row)]
        kinds = [compare(r, fresh.get(r["run_id"])) for r in picks]
        values = [fresh[r["run_id"]]["metrics"][primary] for r in picks
                  if r["run_id"] in fresh and fresh[r["run_id"]]["status"] == "ok"]
        low, high = interval_of_mean([r["metrics"][primary] for r in row.records], len(picks))
        if any(r["run_id"] in missing for r in picks):
            verdict, shown = "NOT REBUILT (its command no longer declares this run)", "—"
        elif len(values) < len(picks):
            verdict, shown = "DOES NOT REPRODUCE (a rerun did not finish ok)", "—"
        else:
            mean = float(np.mean(values))
            inside = all(k == "bitwise" for k in kinds) or low - CLOSE <= mean <= high + CLOSE
            verdict = "reproduces" if inside else "DOES NOT REPRODUCE"
            shown = f"{mean:.4g}"
        failures += not verdict.startswith("reproduces")
        summary = ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds))
        interval = f"[{low:.4g}, {high:.4g}]"
        log(f"{row.label:<{width}}  {summary:<12} {shown:>{len(primary) + 6}}  {interval:<22}  {verdict}")
    log(f"\n{len(rows) - failures} of {len(rows)} rows reproduce; bitwise identity is expected only on the "
        "machine kind, thread count and versions that made the store (records: machine, versions)")
    from bench.leaderboard import build_leaderboard

    if fresh:
        build_leaderboard(task, scratch, log=lambda *a, **k: None)
        log(f"the reruns' own leaderboard: {Path(scratch) / task / 'leaderboard.md'}")
    return 0 if failures == 0 else 1
