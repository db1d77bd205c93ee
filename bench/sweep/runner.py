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
from dataclasses import dataclass, field
from pathlib import Path

from bench.store.claims import HEARTBEAT_S
from bench.store.files import atomic_write
from bench.store.records import RunConfig
from bench.store.results import ResultsStore
from bench.suite.suites import varying_params
from bench.sweep import launchers, provenance
from bench.sweep.interrupt import Interrupted
from bench.sweep.jobs import Job, pick_device
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
        store, finished = stores[task.name]
        rid = config.run_id
        if rid not in finished:
            todo.append((rid, config, task, store))
    counts = {"ok": 0, "diverged": 0, "failed": 0, "skipped": len(runs) - len(todo)}
    setting_keys = varying_params([config.task_params for config, _ in runs])
    # the same for every run of the sweep: taken once (git and package metadata are not free)
    sweep = {"git_commit": provenance.git_commit(), "versions": provenance.versions(), "command": options.command,
             "evaluated_on": evaluate, **({"dirty": True} if dirty else {})}
    jobs = [Job(rid, config, task, device, options.implementations.get(rid, "auto"), evaluate,
                progress=options.progress, wandb={"varying": setting_keys, "sweep": sweep} if options.wandb else None)
            for rid, config, task, store in todo]
    where = place(launch, jobs, device)
    log(f"{len(runs)} runs in the suite, {counts['skipped']} already in the store, {len(todo)} to run on {device}"
        + (f" ({where})" if todo else ""))
    store_of = {rid: store for rid, _, _, store in todo}
    described = {rid: describe(config, setting_keys) for rid, config, _, _ in todo}
    elsewhere: dict[str, str] = {}

    def claimed(jobs):
        """Each run claimed just before it is handed out: another sweep may have taken it."""
        for job in jobs:
            store = store_of[job.run_id]
            if store.claim([job.run_id]):
                yield job
                continue
            owner = store.claimed_elsewhere([job.run_id])
            if owner:
                elsewhere.update(owner)
            else:  # finished by another sweep since this one read the store
                counts["skipped"] += 1

    bar = SweepProgress(len(todo), log)  # a live bar only for a terminal (SweepProgress decides)
    alive = threading.Event()
    beating = threading.Thread(target=heartbeat, args=([s for s, _ in stores.values()], alive), daemon=True)
    beating.start()
    try:
        with contextlib.closing(launcher(launch.launcher)(claimed(jobs), launch)) as results:
            for job, record in results:
                record.update(sweep)
                store = store_of[job.run_id]
                if store_record(store, record, described[job.run_id], log):
                    counts[record["status"]] += 1
                else:
                    counts["not stored"] = counts.get("not stored", 0) + 1
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
