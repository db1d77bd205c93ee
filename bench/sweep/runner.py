"""Runs a resolved suite: the driver of a sweep. It reads which runs the store already
has, claims the others one by one (so that two sweeps on one store never train a run
twice), hands them to a launcher (bench/sweep/launchers/: this process, local workers, Ray,
SLURM) and writes each record to the store as it comes back: the driver is the store's
one writer, whatever runs the training.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.store.claims import HEARTBEAT_S
from bench.store.files import atomic_write
from bench.store.records import RunConfig
from bench.store.results import ResultsStore
from bench.suite.suites import varying_params
from bench.sweep import launchers, provenance
from bench.sweep.interrupt import Interrupted
from bench.sweep.jobs import GroupJob, Job, pick_device
from bench.sweep.launchers import LaunchOptions, cores, launcher
from bench.sweep.progress import SweepProgress
from models.errors import UserInputError
from tasks.base import cache_root


def describe(config: RunConfig, shown: list[str]) -> str:
    setting = "".join(f" {k}={config.task_params[k]}" for k in shown if k in config.task_params)
    trial = f" trial={config.trial['study']}.{config.trial['number']}" if config.trial else ""
    return f"{config.task} {config.arch} budget={config.budget}{setting}{trial} seed={config.seed}"


def check_clean_tree(results_dir: Path, allow_dirty: bool) -> bool:
    """Runs stored under the repository's results/ are the ones people cite: they must come
    from committed code. Returns whether the tree is dirty (allowed: the records say so)."""
    changed = provenance.uncommitted_code()
    if changed and provenance.publishes(results_dir) and not allow_dirty:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise UserInputError(
            f"uncommitted changes outside results/ ({shown}): commit them first, so that the stored runs name "
            "the code that made them, or pass --allow-dirty for an experiment (each record is then marked dirty), "
            "or write to another folder with --results DIR"
        )
    return bool(changed)


@dataclass
class SweepOptions:
    """How a sweep runs, built once at the edge (the command line, verify, a test)."""

    device: str = "auto"  # auto: a GPU where there is one
    launch: LaunchOptions = field(default_factory=lambda: LaunchOptions(workers=1))  # where runs train
    implementations: dict[str, str] = field(default_factory=dict)  # run id -> how its recurrence runs ("auto" else)
    command: str = ""  # what made the sweep, recorded with every run
    store_name: str = "runs.jsonl"  # tuning.jsonl for tuning runs
    evaluate: str = "test"  # "val": score the final validation, not the test set (tuning)
    allow_dirty: bool = False  # store runs of uncommitted code into results/, each marked dirty
    wandb: bool = False  # mirror each run to W&B
    progress: bool = False  # Lightning's progress bar
    stack: bool = False  # train runs that differ only in seed and task data as stacked groups (bench/sweep/stacked.py)
    stack_groups: list | None = None  # with stack: exactly these groups (lists of run ids, in order; verify)


def run_suite(runs, results_dir: Path, options: SweepOptions | None = None, log=print) -> dict:
    """Runs what is missing from the store (results_dir/<task>/<options.store_name>); returns
    counts by status."""
    options = options or SweepOptions()
    runs = [(c if isinstance(c, RunConfig) else RunConfig.from_dict(c), task) for c, task in runs]  # typed once, here
    launch, device, evaluate = options.launch, options.device, options.evaluate
    launch.check()
    dirty = check_clean_tree(results_dir, options.allow_dirty)
    device = pick_device(device)
    stores: dict[str, tuple[ResultsStore, set[str]]] = {}
    todo = []
    for config, task in runs:
        if task.name not in stores:  # read each store once, not once per run
            store = ResultsStore(Path(results_dir) / task.name / options.store_name)
            store.check_writable()  # before anything trains: a run that cannot be stored is lost work
            stores[task.name] = (store, store.finished_ids())
            left = {p.stem for p in store.checkpoints.glob("*.ckpt")}  # a driver killed between store and drop
            store.drop_checkpoints(left & stores[task.name][1])
        store, finished = stores[task.name]
        rid = config.run_id
        if rid not in finished:
            todo.append((rid, config, task, store))
    counts = {"ok": 0, "diverged": 0, "failed": 0, "skipped": len(runs) - len(todo)}
    setting_keys = varying_params([config.task_params for config, _ in runs])
    # the same for every run of the sweep: taken once (git and package metadata are not free)
    sweep = {"git_commit": provenance.git_commit(), "versions": provenance.versions(), "command": options.command,
             "evaluated_on": evaluate, **({"dirty": True} if dirty else {})}
    # a run keeps its progress beside the store where its worker can reach the driver's files (not on Ray's
    # nodes), and not while mirrored to W&B (a resumed run would log its steps again from 0)
    keeps_progress = launch.launcher != "ray" and not options.wandb
    jobs = [Job(rid, config, task, device, options.implementations.get(rid, "auto"), evaluate,
                progress=options.progress, wandb={"varying": setting_keys, "sweep": sweep} if options.wandb else None,
                checkpoint=str(store.checkpoint_path(rid).absolute()) if keeps_progress else None)
            for rid, config, task, store in todo]
    if options.stack:
        jobs = stacked_jobs(jobs, options, launch, device, log)
    where = place(launch, jobs, device)
    log(f"{len(runs)} runs in the suite, {counts['skipped']} already in the store, {len(todo)} to run on {device}"
        + (f" ({where})" if todo else ""))
    store_of = {rid: store for rid, _, _, store in todo}
    described = {rid: describe(config, setting_keys) for rid, config, _, _ in todo}
    elsewhere: dict[str, str] = {}

    def claimed(jobs):
        """Each run claimed just before it is handed out: another sweep may have taken it. A
        group's members are all claimed before it trains; it trains with those it got."""
        for job in jobs:
            members = job.members if isinstance(job, GroupJob) else (job,)
            store = store_of[members[0].run_id]
            owned = set(store.claim([member.run_id for member in members]))
            lost = [member.run_id for member in members if member.run_id not in owned]
            if owned:
                yield (job if not lost else
                       replace(job, members=tuple(m for m in members if m.run_id in owned)))
            if lost:
                owner = store.claimed_elsewhere(lost)
                elsewhere.update(owner)
                counts["skipped"] += len(lost) - len(owner)  # the others: finished by another sweep since

    bar = SweepProgress(len(todo), log)  # a live bar only for a terminal (SweepProgress decides)
    alive = threading.Event()
    beating = threading.Thread(target=heartbeat, args=([s for s, _ in stores.values()], alive), daemon=True)
    beating.start()
    try:
        with contextlib.closing(launcher(launch.launcher)(claimed(jobs), launch)) as results:
            for unit, returned in results:
                finished = (zip(unit.members, returned) if isinstance(unit, GroupJob) else [(unit, returned)])
                for job, record in finished:  # a group's members, each written as it comes
                    record.update(sweep)
                    store = store_of[job.run_id]
                    if store_record(store, record, described[job.run_id], log):
                        counts[record["status"]] += 1
                    else:
                        counts["not stored"] = counts.get("not stored", 0) + 1
                    if record["status"] != "failed":  # a failed run is retried: from its checkpoint
                        store.drop_checkpoints([job.run_id])
                    store.release([job.run_id])
                    bar.finished(described[job.run_id], record)
    except KeyboardInterrupt:  # outside Lightning (which turns its own into SystemExit): the same stop
        raise Interrupted(signal.SIGINT, sum(counts[s] for s in STORED)) from None
    except Interrupted as stop:
        stop.stored = sum(counts[s] for s in STORED)
        raise
    finally:
        alive.set()
        bar.close()
        for store, _ in stores.values():
            store.release_all()
    if todo:
        log(bar.summary(counts["skipped"], len(elsewhere)))
        for rid, owner in list(elsewhere.items())[:5]:
            log(f"  left to another sweep ({owner}): {described[rid]}")
    if elsewhere:
        counts["elsewhere"] = len(elsewhere)
    return counts


def stacked_jobs(jobs: list[Job], options: SweepOptions, launch: LaunchOptions, device: str, log) -> list:
    """--stack: the jobs as groups of runs that differ only in seed and task data (or the
    groups `options.stack_groups` names), each a GroupJob; a run that cannot stack, or is
    alone in its group, stays a Job. Says in one line which runs train one at a time, and why."""
    from bench.sweep.stacked import group_key, why_not_stacked

    if launch.launcher != "local":
        raise UserInputError(f"--stack trains on the local launcher, not {launch.launcher}: drop --stack or use "
                             "--launcher local")
    if device != "cpu":
        raise UserInputError(f"--stack trains on the CPU, not {device}: drop --stack or pass --device cpu")
    if options.wandb:
        raise UserInputError("--stack does not mirror runs to W&B: drop --wandb or --stack")
    if options.implementations and any(v != "auto" for v in options.implementations.values()) \
            and options.stack_groups is None:
        raise UserInputError("--stack runs its own stacked implementation: drop --backend/--cw-backend or --stack")
    by_id = {job.run_id: job for job in jobs}
    if options.stack_groups is not None:
        named = [[by_id[rid] for rid in group if rid in by_id] for group in options.stack_groups]
        grouped = {job.run_id for group in named for job in group}
        groups = [group for group in named if group]
        singles = [job for job in jobs if job.run_id not in grouped]
        why = {}
    else:
        keyed: dict[str, list[Job]] = {}
        singles, why = [], {}
        for job in jobs:
            reason = why_not_stacked(job.config)
            if reason:
                singles.append(job)
                why.setdefault(reason, 0)
                why[reason] += 1
            else:
                keyed.setdefault(group_key(job.config), []).append(job)
        groups = list(keyed.values())
    explicit = options.stack_groups is not None  # verify: a recorded group trains stacked even if alone
    units = [GroupJob(tuple(group)) if len(group) > 1 or explicit else group[0] for group in groups]
    stacked = sum(len(unit.members) for unit in units if isinstance(unit, GroupJob))
    log(f"--stack: {stacked} runs in {sum(isinstance(u, GroupJob) for u in units)} stacked groups"
        + (f"; {len(jobs) - stacked} train one at a time" if len(jobs) > stacked else "")
        + (" (" + "; ".join(f"{n}: {reason}" for reason, n in why.items()) + ")" if why else ""))
    return units + singles


def store_record(store: ResultsStore, record: dict, description: str, log=print) -> bool:
    """Writes a finished run's record; False where the store already has a finished record of
    that run (another sweep's, or a line added by hand), which is kept and this one reported
    beside it. A store that refuses the line (an error of the file system, or a line of the
    store that is not valid) stops the sweep, and the finished run is kept (keep_unsaved):
    no trained run is dropped."""
    try:
        if store.put(record):
            return True
    except (OSError, UserInputError, ValueError) as err:
        why = (f"could not write {err.filename or store.path} ({err.strerror or err})" if isinstance(err, OSError)
               else str(err))
        raise UserInputError(f"{why}; {kept_saying(record, store)}") from None
    metric = record["primary_metric"]
    theirs = next((r for r in store.scan()[0] if r["run_id"] == record["run_id"]), {})
    kept = keep_unsaved(record)
    log(f"  not stored: {description}: {store.path} already has this run ({theirs.get('status')}, {metric}="
        f"{theirs.get('metrics', {}).get(metric)}; from another sweep or added by hand), which stays; this sweep's "
        f"record ({record['status']}, {metric}={record['metrics'].get(metric)}) is "
        + (f"kept in {kept}" if kept else "not kept anywhere"))
    return False


def kept_saying(record: dict, store: ResultsStore) -> str:
    """Keeps a record the store refused and says how to add it back: a file in unsaved/, or,
    where no folder takes it, the record itself printed to stderr."""
    kept = keep_unsaved(record)
    if kept:
        return (f"the finished run is kept in {kept}: append that line to {store.path} (`cat {kept} >> "
                f"{store.path}`) once it can be written")
    print(json.dumps(record, sort_keys=True), file=sys.stderr, flush=True)
    return (f"no folder would take the finished run either: its record is the line printed above; append it to "
            f"{store.path} once it can be written")


def place(launch: LaunchOptions, jobs: list[Job], device: str) -> str:
    """Fill in the local launcher's workers and threads; say where the runs will train."""
    if launch.launcher == "ray":
        return f"Ray tasks on {launch.ray_address}, {launch.ray_cpus:g} CPUs each"
    if launch.launcher == "slurm":
        return "a SLURM job array" + (" (local processes)" if launch.slurm.get("cluster") == "local" else "")
    if launch.workers is None:
        launch.workers = launchers.default_workers(jobs, device)
    if launch.workers == 1:
        return "in this process" + (f", {launch.threads} threads" if launch.threads else "")
    launch.threads = launch.threads or max(1, cores() // launch.workers)
    return f"{launch.workers} local worker processes, {launch.threads} threads each"


def heartbeat(stores: list[ResultsStore], stop: threading.Event) -> None:
    """Touch this sweep's claims while it runs (a claim of another host expires unless touched)."""
    while not stop.wait(HEARTBEAT_S):  # the claims' own rhythm (bench/store/claims.py)
        for store in stores:
            store.heartbeat()


STORED = ("ok", "diverged", "failed")


def keep_unsaved(record: dict) -> Path | None:
    """A finished run that the store could not take, written where it can be recovered
    (the cache folder, else the temporary folder); None if nowhere would take it."""
    for folder in (cache_root() / "unsaved",
                   Path(tempfile.gettempdir()) / "cwbench-unsaved"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{record['task']}-{record['run_id']}.jsonl"
            atomic_write(path, json.dumps(record, sort_keys=True) + "\n")
            return path
        except OSError:
            continue
    return None
