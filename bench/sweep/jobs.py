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
    # the plugins loaded where the job was made (models/plugins.py): a worker process loads them again
    plugins: tuple = field(default_factory=loaded_plugins)


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


def failed_record(job: Job, reason: str, worker: dict | None = None, wall: float = 0.0) -> dict:
    """The record of a run that did not finish: kept, so the sweep can say why, and retried
    by the next invocation (failed runs are not finished)."""
    return {**base_record(job), "status": "failed", "reason": reason, "metrics": {}, "artifacts": {}, "curve": [],
            "effective_params": None, "backend": job.backend, "learned": None, "wall_time_s": round(wall, 3),
            "worker": worker or {}}


def execute(job: Job, launcher: str = "local") -> dict:
    """Train one run here and return its record, without the sweep's provenance (commit,
    versions, command), which the driver adds. Never raises for a run that crashed: that
    is a failed record; an interrupt (bench.sweep.interrupt.Interrupted) does propagate."""
    from bench.sweep import provenance
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
                           make_logger if job.wandb is not None else None)
    except Exception as err:  # a crashed run is recorded, and the sweep goes on
        record = failed_record(job, f"{type(err).__name__}: {err}", worker, time.perf_counter() - started)
    else:
        record = {**base_record(job), "status": result.pop("status"), "reason": result.pop("reason"), **result,
                  "wall_time_s": round(time.perf_counter() - started, 3), "worker": worker}
    record.update(device=provenance.device_name(job.device), machine=provenance.machine(job.device),
                  date=provenance.now())
    if loggers:
        from bench.sweep.wandb_log import finish

        finish(loggers[-1], record)
    return record
