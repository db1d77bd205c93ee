"""`cwbench verify TASK`: re-run a sample of a committed leaderboard's runs and say
whether each row reproduces.

Each row gets one verdict:
- `bitwise`: every rerun of a committed seed gave identical metrics (expected on the CPU
  model, flags, thread count and package versions that made the records: the header says
  whether this machine is one);
- `close`: within float noise (relative 1e-6) of the records;
- otherwise the reruns are put to a statistical test: are they draws from the distribution
  of the row's n committed seeds? A two-sided permutation test of the difference of means
  (exact for bounded, skewed or tied metrics), Holm-corrected over the rows tested, so that
  the command as a whole fails a faithful reproduction at most `alpha` (5%) of the time:
  `consistent` or `inconsistent`;
- `too few seeds to tell`: n seeds and K reruns cannot give a p-value below the corrected
  level, however far the reruns land; the line says how many reruns would.
- `not verified`: the row was made with a plugin (its records' `external`: code from outside the
  repository, models/plugins.py) whose code now hashes otherwise than the code that made it.
Only `inconsistent` rows, rows not rebuilt or not verified and reruns that did not finish ok fail
the command.

A row here is the finest one: profile x task setting (one audio target, one delay ...)
x architecture x budget x training settings. Each run is rebuilt from the command
recorded with it (the one the leaderboard prints), so what is checked is what a reader
would run; its run id must come out the same, or the row is reported as not rebuilt.
Reruns beyond a row's committed seeds (--sample above n) train new seeds: they count in the
test but have nothing to be bitwise-equal to.

A record trained in a stacked group (`cwbench run --stack`, its `stacked` field) is rerun
with its whole group, stacked, its members in their recorded order: a stacked computation is
deterministic given its group, so bitwise identity is expected where it is expected for any
run. (A stacked run and the same run trained alone agree to float rounding, not bitwise.)
"""

from __future__ import annotations

import itertools
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.report import stats
from bench.store import verified
from bench.store.records import RunRecord
from bench.store.results import ResultsStore
from bench.suite.suites import varying_params
from bench.sweep.threads import pin_threads
from models.errors import UserInputError

ALPHA = 0.05  # the command's family-wise false-failure rate
CLOSE = 1e-6  # relative: "same within tolerance" (float noise of another CPU or thread count)
# what decides a run's bits besides the code, the seed and the thread count (pinned to the record's)
SAME_MACHINE = {"cpu_model": "CPU model", "cpu_flags_sha256": "CPU flags",
                "torch_cpu_capability": "torch's CPU kernels"}
SAME_VERSIONS = ("python", "torch", "numpy", "numba", "pytorch-lightning")


@dataclass
class Row:
    key: tuple
    records: list[RunRecord]  # the committed ok runs, by seed
    label: str


def row_key(r: RunRecord) -> tuple:
    return (r.profile, json.dumps(r.task_params, sort_keys=True), r.arch, r.budget, json.dumps(r.train, sort_keys=True))


def rows_of(records: list[RunRecord]) -> list[Row]:
    varying = varying_params([r.task_params for r in records])
    rows: dict[tuple, list[RunRecord]] = {}
    for r in records:
        if r.status != "ok":
            continue
        rows.setdefault(row_key(r), []).append(r)
    out = []
    for key, group in rows.items():
        group.sort(key=lambda r: r.seed)
        first = group[0]
        setting = ", ".join(f"{k}={v}" for k, v in first.task_params.items()
                            if k in varying and k != "sha256")
        out.append(Row(key, group, f"{first.profile} {first.arch} budget={first.budget}"
                                   + (f" {setting}" if setting else "")))
    return out


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


def rebuild(records: list[RunRecord], task: str, results_dir: Path, read_run_command) -> dict[str, tuple]:
    """run_id -> (config, task object) for every run that the records' commands declare.
    `read_run_command(words)` -> (profile name, profile) is the command line's own reading of
    `cwbench run` arguments (bench/cli.py, which imports this module)."""
    from bench.suite.search import tuned_settings
    from bench.suite.suites import resolve

    plan = {}
    for command, profile_name in sorted({(r.command or "", r.profile) for r in records}):
        name, profile = read_run_command(command_args(command, task, profile_name))
        # what tuning chose comes from the committed tuning store beside the runs
        tuned = tuned_settings(task, name, profile, results_dir)
        for config, task_object in resolve(task, name, profile, tuned):
            plan[config.run_id] = (config, task_object)
    return plan


def run_threads(record: dict) -> int | None:
    """The torch thread count one run was made with (its machine record, or its device string)."""
    machine = record.machine or {}
    if "torch_threads" in machine:
        return machine["torch_threads"]
    device = record.device or ""
    if device.startswith("cpu (") and device.endswith(" threads)"):
        return int(device.rsplit(",", 1)[1].split()[0])
    return None


def recorded_threads(records: list[RunRecord]) -> int | None:
    """The torch thread count the runs were made with, if they agree on one: sums split
    over another count of threads give other bits."""
    counts = {run_threads(r) for r in records} - {None}
    return counts.pop() if len(counts) == 1 else None


def changed_plugin(row: Row) -> str:
    """Why a row made with a plugin (records with `external`: models/plugins.py) cannot be
    verified: the plugin's code now hashes otherwise than the code that made its runs, or it is
    not loaded. "" for a row whose plugin is unchanged, or a built-in row."""
    from models.plugins import current_sha256

    for r in row.records:
        external = r.external or {}
        if not external.get("plugin"):
            continue
        name, recorded = external.get("plugin"), external.get("sha256")
        now = current_sha256(name)
        if now is None:
            return f"plugin {name} is not loaded: give its file with --include, or install it"
        if now != recorded:
            return (f"plugin {name}'s code has changed since its runs: sha256 {str(recorded)[:12]}... recorded, "
                    f"{now[:12]}... now ({external.get('source')})")
    return ""


def compare(old: RunRecord, new: RunRecord | None) -> str:
    if new is None or new.status != "ok":
        return "not rerun" if new is None else new.status
    if new.metrics == old.metrics:
        return "bitwise"
    close = all(abs(new.metrics.get(k, np.nan) - v) <= CLOSE * max(1.0, abs(v)) for k, v in old.metrics.items())
    return "close" if close else "different"


def machine_comparison(records: list[RunRecord], machine: dict, versions: dict) -> tuple[bool, str]:
    """Whether bitwise identity is to be expected on this machine, and the header line that
    says why: what of the records' machine and versions differs here (threads are pinned to
    each record's own count, so they never differ)."""
    unnamed = sum(not r.machine for r in records)
    if unnamed:
        return False, (f"bitwise identity not expected: {unnamed} of {len(records)} records do not name the machine "
                       "that made them (made before machine provenance was recorded)")
    differs = []
    for key, what in SAME_MACHINE.items():
        theirs = sorted({str(r.machine.get(key)) for r in records})
        if theirs != [str(machine.get(key))]:
            differs.append(f"{what} (records: {', '.join(theirs)}; here: {machine.get(key)})")
    for package in SAME_VERSIONS:
        theirs = sorted({str((r.versions or {}).get(package)) for r in records})
        if theirs != [str(versions.get(package))]:
            differs.append(f"{package} (records: {', '.join(theirs)}; here: {versions.get(package)})")
    if differs:
        return False, "bitwise identity not expected here, these differ: " + "; ".join(differs)
    return True, (f"bitwise identity expected here: the records' CPU model ({machine.get('cpu_model')}), CPU flags "
                  f"and versions of {', '.join(SAME_VERSIONS)}, each run on its recorded thread count")


@dataclass
class Check:
    """One row's reruns and what they say."""

    row: Row
    paired: list[RunRecord]  # the committed records rerun, by seed
    extra: list[str]  # run ids of new seeds
    kinds: list[str] = field(default_factory=list)  # per paired record: bitwise, close, different, ...
    values: list[float] = field(default_factory=list)  # the reruns' primary metric (paired and new)
    verdict: str = ""
    p: float | None = None

    @property
    def n(self) -> int:
        return len(self.row.records)

    @property
    def k(self) -> int:
        return len(self.paired) + len(self.extra)


def new_seed_configs(row: Row, plan: dict, count: int, taken: set[int]) -> list[tuple]:
    """Configs of `count` seeds the store has not got for this row: the row's rebuilt config
    with another seed (what `--seeds` would add)."""
    config, task = plan[row.records[0].run_id]
    seeds = (s for s in itertools.count(max(taken) + 1) if s not in taken)
    return [(config.with_seed(next(seeds)), task) for _ in range(count)]


def judge(checks: list[Check], primary: str, alpha: float) -> None:
    """Each check's verdict: bitwise, close, or the family's statistical test (see the module)."""
    tested = []
    for c in checks:
        if c.verdict:  # not rebuilt, or a rerun not ok
            continue
        if c.kinds and all(k == "bitwise" for k in c.kinds):
            c.verdict = "bitwise"
        elif c.kinds and all(k in ("bitwise", "close") for k in c.kinds):
            c.verdict = "close"
        else:
            tested.append(c)
    testable = stats.testable_rows([(c.n, c.k) for c in tested], alpha)
    family = [c for c, ok in zip(tested, testable) if ok]
    for c, ok in zip(tested, testable):
        if not ok:
            needed = stats.reruns_needed(c.n, alpha / (len(family) + 1))
            c.verdict = (f"too few seeds to tell ({c.n} seeds, {c.k} reruns: "
                         + (f"--sample {needed} would tell)" if needed else "the row needs more seeds)"))
    for c in family:
        c.p = stats.permutation_p(c.values, [r.metrics[primary] for r in c.row.records])
    for c, rejected in zip(family, stats.holm([c.p for c in family], alpha)):
        c.verdict = "INCONSISTENT" if rejected else "consistent"


def verify(task: str, results_dir: Path, scratch: Path, read_run_command, sample: int = 1, profile: str | None = None,
           log=print, alpha: float = ALPHA, workers: int | None = None) -> int:
    from bench.sweep.launchers import LaunchOptions
    from bench.sweep.runner import SweepOptions, run_suite

    store = ResultsStore(Path(results_dir) / task / "runs.jsonl")
    records = [r for r in map(RunRecord.from_dict, store.load()) if profile is None or r.profile == profile]
    if not records:
        raise UserInputError(f"no stored runs to verify for task {task}"
                             + (f" profile {profile}" if profile else "") + f" in {store.path}")
    threads = recorded_threads(records)
    if threads:
        pin_threads(threads)  # first: before anything loads torch
    rows = rows_of(records)
    plan = rebuild(records, task, Path(results_dir), read_run_command)
    taken = {(json.dumps(row.key), r.seed) for row in rows for r in row.records}
    checks, runs_of = [], {}  # runs_of: thread count -> (config, task) to rerun
    groups_of: dict = {}  # thread count -> {stacked group: its members' run ids} to rerun stacked
    for row in rows:
        check = Check(row, row.records[:sample], [])
        if any(r.run_id not in plan for r in check.paired):
            check.verdict = "NOT REBUILT (its command no longer declares this run)"
        elif why := changed_plugin(row):  # its runs' code is not the plugin's code now: nothing to verify
            check.verdict = f"NOT VERIFIED ({why})"
        else:
            seeds = {s for key, s in taken if key == json.dumps(row.key)}
            extra = new_seed_configs(row, plan, max(0, sample - len(row.records)), seeds)
            check.extra = [config.run_id for config, _ in extra]
            for r in check.paired:
                if r.stacked:  # trained in a stacked group: the group trains again, stacked, in its order
                    group = r.stacked["members"]
                    if any(rid not in plan for rid in group):
                        check.verdict = "NOT REBUILT (its command no longer declares every run of its stacked group)"
                        break
                    groups_of.setdefault(run_threads(r), {})[r.stacked["group"]] = group
                    runs_of.setdefault(run_threads(r), []).extend(plan[rid] for rid in group)
                else:
                    runs_of.setdefault(run_threads(r), []).append(plan[r.run_id])
            runs_of.setdefault(run_threads(row.records[0]), []).extend(extra)
        checks.append(check)
    from bench.sweep import provenance

    expected, machine_line = machine_comparison(records, provenance.machine("cpu"), provenance.versions())
    for count, group in runs_of.items():  # a run in two checks' groups trains once
        runs_of[count] = list({config.run_id: (config, task) for config, task in group}.values())
    total = sum(len(group) for group in runs_of.values())
    log(f"verify {task}: {len(rows)} rows, rerunning {total} runs ({sample} per row) into {scratch}, each on the "
        "thread count it was recorded with" + (f" ({threads})" if threads else ""))
    log(machine_line)
    # each rerun on the implementation its record names (auto may choose otherwise today)
    recorded = {r.run_id: r.backend for c in checks for r in c.paired if r.backend and not r.stacked}
    for count, group in runs_of.items():
        if count:
            import torch

            torch.set_num_threads(count)
        stacked = list(groups_of.get(count, {}).values())
        options = SweepOptions(launch=LaunchOptions(workers=workers, threads=count), implementations=recorded,
                               command=f"cwbench verify {task} --sample {sample}", stack=bool(stacked),
                               stack_groups=stacked or None)
        run_suite(group, scratch, options, log=log)
    fresh = {r.run_id: r for r in map(RunRecord.from_dict, ResultsStore(Path(scratch) / task / "runs.jsonl").load())}

    primary = records[0].primary_metric
    for c in checks:
        if c.verdict:
            continue
        reruns = [fresh.get(r.run_id) for r in c.paired] + [fresh.get(rid) for rid in c.extra]
        if any(r is None or r.status != "ok" for r in reruns):
            c.verdict = "DOES NOT REPRODUCE (a rerun did not finish ok: " + ", ".join(
                sorted({"not rerun" if r is None else r.status for r in reruns if r is None or r.status != "ok"})
            ) + ")"
            continue
        c.kinds = [compare(r, fresh[r.run_id]) for r in c.paired]
        c.values = [r.metrics[primary] for r in reruns]
    judge(checks, primary, alpha)
    report(checks, primary, alpha, expected, log)
    record_verifications(store.path, checks, records, f"cwbench verify {task} --sample {sample}", log)
    from bench.report.leaderboard import build_leaderboard

    if fresh:
        build_leaderboard(task, scratch, log=lambda *a, **k: None)
        log(f"the reruns' own leaderboard: {Path(scratch) / task / 'leaderboard.md'}")
    return 0 if all(c.verdict in ("bitwise", "close", "consistent") or c.verdict.startswith("too few")
                    for c in checks) else 1


def record_verifications(store_path: Path, checks: list[Check], records: list[RunRecord], command: str,
                         log) -> None:
    """A row with external records (a plugin's, or imported) gets a line in verified.jsonl
    beside the store (bench/store/verified.py): the run ids of the row (every status), the
    verdict, and where and when; the leaderboard drops its external mark while the latest
    verdict reproduced it."""
    from bench.sweep import provenance

    of_row: dict[tuple, list[RunRecord]] = {}
    for r in records:
        of_row.setdefault(row_key(r), []).append(r)
    external = [c for c in checks if any(verified.is_external(r.external) for r in of_row[c.row.key])]
    if external:
        machine = provenance.machine("cpu")
        entries = [{"run_ids": [r.run_id for r in of_row[c.row.key]], "row": c.row.label, "verdict": c.verdict,
                    "reproduced": c.verdict in verified.REPRODUCED, "commit": provenance.git_commit(),
                    "machine": {k: machine.get(k) for k in ("cpu_model", "cpu_flags_sha256", "torch_threads")},
                    "date": provenance.now(), "command": command} for c in external]
        verified.append(store_path, entries)
        log(f"{len(entries)} rows with external runs: {sum(e['reproduced'] for e in entries)} reproduced here "
            f"(no longer external), recorded in {verified.verified_path(store_path)}")


def report(checks: list[Check], primary: str, alpha: float, expected: bool, log) -> None:
    """One line per row (what was rerun, how it compares, the verdict), then the tally."""
    width = max(len(c.row.label) for c in checks)
    log(f"\n{'row':<{width}}  {'seeds':>5}  {'reruns':<26} {primary + ' reruns':>14}  {'seeds: mean [min, max]':<30}"
        f"  {'p':>7}  verdict")
    for c in checks:
        committed = [r.metrics[primary] for r in c.row.records]
        kinds = c.kinds + ["new seed"] * len(c.extra) if c.kinds or not c.verdict else []
        summary = ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds)) or f"{c.k} not compared"
        shown = f"{np.mean(c.values):.4g}" if c.values else "—"
        seeds = f"{np.mean(committed):.4g} [{min(committed):.4g}, {max(committed):.4g}]"
        p = f"{c.p:.2g}" if c.p is not None else "—"
        log(f"{c.row.label:<{width}}  {c.n:>5}  {summary:<26} {shown:>{len(primary) + 8}}  {seeds:<30}  {p:>7}  "
            f"{c.verdict}")
    verdicts = [c.verdict.split(" (")[0] for c in checks]
    tally = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
    tested = sum(c.p is not None for c in checks)
    log(f"\n{len(checks)} rows: {tally}. Statistical test: permutation test of the reruns' mean against the "
        f"seeds', Holm-corrected over the {tested} rows tested (a faithful reproduction fails at most {alpha:.0%} "
        "of the time)")
    if expected and any(k not in ("bitwise",) for c in checks for k in c.kinds):
        log("note: bitwise identity was expected on this machine, but not every rerun is bitwise: the code, the "
            "data or a setting the records do not capture has changed")
