"""A run as a unit of work that any launcher can send anywhere: a `Job` (everything the run
needs, picklable) and `execute(job)`, which trains it in whatever process it lands in and
returns its record. The record is written by the sweep's one driver (bench/sweep/runner.py),
never here: a worker knows nothing of stores.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

from bench.store.records import RunConfig
from bench.sweep.threads import pin_threads
from models import plugins
from models.plugins import sources as loaded_plugins

# where a run ran, beyond host and pid, when the scheduler says so
SCHEDULER_VARIABLES = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURMD_NODENAME")


@dataclass(frozen=True)
class Job:
    run_id: str
    config: RunConfig
    task: object  # the task adapter (tasks/): picklable, it holds parameters, not data
    device: str  # "cpu" or "cuda", resolved by the driver
    backend: str = "auto"  # implementation of the recurrence (models/names.py: IMPLEMENTATIONS)
    evaluate: str = "test"  # "val" for tuning runs
    threads: int | None = None  # torch threads in the worker; None leaves the process's own count
    wandb: dict | None = None  # {"varying": [...], "sweep": {...}} to mirror the run to W&B
    progress: bool = False  # Lightning's progress bar (useful with the inline launcher only)
    checkpoint: str | None = None  # where the run keeps its progress (bench/sweep/checkpoints.py); None: nowhere
    # the plugins loaded where the job was made (models/plugins.py): a worker process loads them again
    plugins: tuple = field(default_factory=loaded_plugins)


@dataclass(frozen=True)
class GroupJob:
    """Runs that train as one stacked computation (bench/sweep/stacked.py: they differ only
    in seed and task data), sent anywhere as one unit; `execute` returns one record per
    member, in the members' order."""

    members: tuple[Job, ...]
    threads: int | None = None
    plugins: tuple = field(default_factory=loaded_plugins)

    @property
    def run_id(self) -> str:
        """The group's name (what a launcher keys its attempts by)."""
        from bench.sweep.stacked import group_id

        return group_id([job.run_id for job in self.members])

    @property
    def config(self) -> RunConfig:
        return self.members[0].config


def worker_identity(launcher: str) -> dict:
    """Which process ran a run: the launcher, host and pid, and the scheduler's ids."""
    identity = {"launcher": launcher, "host": socket.gethostname(), "pid": os.getpid()}
    identity.update({name.lower(): os.environ[name] for name in SCHEDULER_VARIABLES if name in os.environ})
    return identity


def pick_device(device: str) -> str:
    """auto: a GPU where torch sees one, else the CPU."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def base_record(job: Job) -> dict:
    task = job.task
    return {"run_id": job.run_id, **job.config.to_dict(), "sources": task.sources(), "baselines": task.baselines(),
            "primary_metric": task.primary_metric, "higher_is_better": task.higher_is_better,
            **plugins.provenance(job.config.model["arch"])}  # `external`: a plugin's code and its hash


def failed_record(job: Job | GroupJob, reason: str, worker: dict | None = None, wall: float = 0.0) -> dict | list:
    """The record of a run that did not finish: kept, so the sweep can say why, and retried
    by the next invocation (failed runs are not finished). A group: one per member."""
    if isinstance(job, GroupJob):
        return [failed_record(member, reason, worker, wall) for member in job.members]
    return {**base_record(job), "status": "failed", "reason": reason, "metrics": {}, "artifacts": {}, "curve": [],
            "effective_params": None, "backend": job.backend, "learned": None, "wall_time_s": round(wall, 3),
            "worker": worker or {}}


def execute(job: Job | GroupJob, launcher: str = "local") -> dict | list:
    """Train one run here and return its record, without the sweep's provenance (commit,
    versions, command), which the driver adds. Never raises for a run that crashed: that
    is a failed record; an interrupt (bench.sweep.interrupt.Interrupted) does propagate.
    A group trains as one stacked computation and returns its members' records."""
    from bench.sweep import provenance

    if isinstance(job, GroupJob):
        return execute_group(job, launcher)
    from bench.sweep.training import train_one

    if job.threads:
        pin_threads(job.threads)
    plugins.ensure(job.plugins)  # before anything is built: a spawned worker has loaded none
    worker = worker_identity(launcher)
    started = time.perf_counter()
    loggers = []

    def make_logger(backend):
        from bench.sweep.wandb_log import make_logger

        loggers.append(make_logger(job.config, job.run_id, job.wandb["varying"], task=job.task, device=job.device,
                                   backend=backend, sweep=job.wandb["sweep"]))
        return loggers[-1]

    try:
        result = train_one(job.config, job.task, job.device, job.backend, job.evaluate, job.progress,
                           make_logger if job.wandb is not None else None, job.checkpoint)
    except Exception as err:  # a crashed run is recorded, and the sweep goes on
        record = failed_record(job, f"{type(err).__name__}: {err}", worker, time.perf_counter() - started)
    else:
        before = result.pop("wall_time_before_s", 0.0)  # a resumed run's, up to its checkpoint
        record = {**base_record(job), "status": result.pop("status"), "reason": result.pop("reason"), **result,
                  "wall_time_s": round(time.perf_counter() - started + before, 3), "worker": worker}
    record.update(device=provenance.device_name(job.device), machine=provenance.machine(job.device),
                  date=provenance.now())
    if loggers:
        from bench.sweep.wandb_log import finish

        finish(loggers[-1], record)
    return record


def execute_group(group: GroupJob, launcher: str) -> list:
    """The members of a group trained as one stacked computation, one record each; each
    record says so (`stacked`: the group's name, its members in order and this one's index:
    what `cwbench verify` needs to train the same group again). A crash fails every member."""
    from bench.sweep import provenance
    from bench.sweep.stacked import train_stacked

    if group.threads:
        pin_threads(group.threads)
    plugins.ensure(group.plugins)
    worker = worker_identity(launcher)
    members = group.members
    started = time.perf_counter()
    try:
        results = train_stacked([job.config for job in members], [job.task for job in members], members[0].device,
                                members[0].evaluate)
    except Exception as err:  # a crashed group is recorded, and the sweep goes on
        records = failed_record(group, f"{type(err).__name__}: {err}", worker, time.perf_counter() - started)
    else:
        wall = time.perf_counter() - started
        records = [{**base_record(job), "status": result.pop("status"), "reason": result.pop("reason"), **result,
                    "wall_time_s": round(wall / len(members), 3), "worker": worker}
                   for job, result in zip(members, results)]
    ids = [job.run_id for job in members]
    for index, record in enumerate(records):
        record.update(device=provenance.device_name(members[0].device), machine=provenance.machine(members[0].device),
                      date=provenance.now(), stacked={"group": group.run_id, "members": ids, "index": index,
                                                      "wall_time_s": round(time.perf_counter() - started, 3)})
    return records
