"""Where a sweep's runs train: here, in local worker processes (local.py), as Ray tasks on a
Ray cluster (ray.py), or as a SLURM job array (slurm.py, submitit). Each launcher is a
generator: it takes jobs (bench/sweep/jobs.py) from an iterator as it has room for them and
yields (job, record) as runs finish, in any order. Records always come back to the one driver
process, which alone writes the store (bench/sweep/runner.py). A run whose worker died comes
back as a failed record (retried by the next invocation), never silently lost; closing the
generator (an interrupt, an error in the driver) stops what is still running.

What trains on this machine dies with the driver, even a driver killed with SIGKILL that
can stop nothing itself: local workers and the processes of submitit's local executor
watch it (`local.die_with`). On a real SLURM cluster a killed driver's array jobs keep running;
the next invocation of the same sweep collects what they stored in submitit's folder and
waits for those still queued or running, instead of training them again (`slurm.SubmittedRuns`).
A Ray cluster that goes away is noticed within seconds (`ray.ClusterLost`).

This module holds what every launcher shares: the options, checked once at the edge, and the
table of launchers.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
from dataclasses import dataclass, field

from bench.sweep.jobs import Job
from models.errors import UserInputError

# --slurm KEY=VALUE (or a YAML file of them) -> submitit's parameter
SLURM_KEYS = {
    "partition": "slurm_partition",
    "time": "timeout_min",  # minutes per run
    "cpus_per_task": "cpus_per_task",
    "gpus_per_task": "gpus_per_node",  # one task per node: a run's GPUs
    "mem_gb": "mem_gb",
    "account": "slurm_account",
    "qos": "slurm_qos",
    "constraint": "slurm_constraint",
    "array_parallelism": "slurm_array_parallelism",
    "folder": None,  # where submitit keeps job files and logs (must be visible from the nodes)
    "cluster": None,  # "slurm" (default) or "local": submitit's local executor, real subprocesses
}



@dataclass
class LaunchOptions:
    """How a sweep is launched, from the command line; checked once, in `check`."""

    launcher: str = "local"
    workers: int | None = None  # local: worker processes (None: as many as suit the runs' size)
    threads: int | None = None  # torch threads per run (None: cores / workers locally, the task's CPUs on Ray)
    ray_address: str | None = None
    ray_cpus: float = 1.0  # CPUs each Ray task declares
    slurm: dict = field(default_factory=dict)  # SLURM_KEYS -> value

    def check(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise UserInputError(f"unknown launcher '{self.launcher}': choose one of {', '.join(LAUNCHERS)}")
        if self.launcher == "ray" and not self.ray_address:
            raise UserInputError("--launcher ray needs --ray-address HOST:PORT of a running Ray cluster "
                                 "(start one with `ray start --head`)")
        if self.launcher == "ray":
            check_reachable(self.ray_address)
        if self.launcher != "ray" and self.ray_address:
            raise UserInputError(f"--ray-address is for --launcher ray, not {self.launcher}")
        if self.launcher != "slurm" and self.slurm:
            raise UserInputError(f"--slurm settings are for --launcher slurm, not {self.launcher}")
        if self.launcher != "local" and self.workers is not None:
            raise UserInputError(f"--workers is for --launcher local; {self.launcher} runs as many runs at once as "
                                 "the cluster has room for")
        if self.launcher == "local":
            for flag, value in (("--workers", self.workers), ("--threads", self.threads)):
                if value is not None and value > cores():
                    raise UserInputError(f"{flag} {value} is more than the {cores()} cores this process may use: give "
                                         f"at most {cores()} (runs beyond the cores only slow each other down)")
            if self.workers and self.threads and self.workers * self.threads > cores():
                raise UserInputError(f"--workers {self.workers} x --threads {self.threads} is more than the {cores()} "
                                     f"cores this process may use: give --threads {max(1, cores() // self.workers)} "
                                     "or fewer workers")
        if self.launcher == "ray" and not (math.isfinite(self.ray_cpus) and self.ray_cpus > 0):
            raise UserInputError(f"bad --ray-cpus {self.ray_cpus}: give the CPUs each run declares, e.g. 1")
        unknown = sorted(set(self.slurm) - set(SLURM_KEYS))
        if unknown:
            raise UserInputError(f"unknown SLURM setting '{unknown[0]}': the settings are {', '.join(SLURM_KEYS)}")
        for key, value in self.slurm.items():
            check_slurm_setting(key, value)
        if self.launcher == "slurm":
            cluster = self.slurm.get("cluster", "slurm")
            if cluster not in ("slurm", "local"):
                raise UserInputError(f"bad SLURM setting cluster={cluster}: use slurm, or local to run the job "
                                     "array as local processes")
            if cluster == "slurm" and not shutil.which("sbatch"):
                raise UserInputError("--launcher slurm: no SLURM here (sbatch not found): run from a cluster's "
                                     "login node, or pass --slurm cluster=local to run the job array as local "
                                     "processes")


SLURM_WHOLE = ("cpus_per_task", "array_parallelism")  # integers >= 1
SLURM_NUMBERS = ("time", "mem_gb")  # numbers > 0
SLURM_TEXT = ("partition", "account", "qos", "constraint", "folder", "cluster")


def check_slurm_setting(key: str, value) -> None:
    """One --slurm KEY=VALUE: its type and bounds, said before anything is submitted."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in SLURM_WHOLE and not (number and value == int(value) and value >= 1):
        raise UserInputError(f"bad SLURM setting {key}={value!r}: it must be a whole number >= 1 "
                             f"(--slurm {key}=N)")
    if key == "gpus_per_task" and not (number and value == int(value) and value >= 0):
        raise UserInputError(f"bad SLURM setting {key}={value!r}: it must be a whole number >= 0 (--slurm {key}=N)")
    if key in SLURM_NUMBERS and not (number and math.isfinite(value) and value > 0):
        raise UserInputError(f"bad SLURM setting {key}={value!r}: it must be a number > 0 "
                             f"({'minutes per run' if key == 'time' else 'GB per run'}, --slurm {key}=N)")
    if key in SLURM_TEXT and not (isinstance(value, str) and value):
        raise UserInputError(f"bad SLURM setting {key}={value!r}: give a name (--slurm {key}=NAME)")


def check_reachable(address: str) -> None:
    """A Ray head that is not there is said at once (ray.init would wait minutes for it)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserInputError(f"bad --ray-address '{address}': give the head's HOST:PORT, e.g. 127.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except (OSError, OverflowError) as err:
        why = getattr(err, "strerror", None) or err
        raise UserInputError(f"cannot connect to the Ray cluster at {address} ({why}): start one with "
                             "`ray start --head` and pass its address (HOST:PORT) to --ray-address") from None


def cores() -> int:
    """The CPUs this process may run on (a cgroup or taskset can give fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Up to this many parameters a run gains little from a second torch thread (one step is a
# few small matmuls), so the cores are better spent on runs side by side (the quick audio
# suite on 2 cores: 50 s in one process of 2 threads, 29-30 s in two of 1); above it one run
# gets every core.
SMALL_RUN_PARAMS = 20_000


def default_workers(jobs: list[Job], device: str) -> int:
    if device == "cuda":
        return 1  # one process per GPU: runs side by side on one GPU only compete
    small = all(job.config.params <= SMALL_RUN_PARAMS for job in jobs)
    return cores() if small else 1




# name -> "module:attr" of a generator(jobs, options) -> (job, record) as runs finish
LAUNCHERS = {
    "local": "bench.sweep.launchers.local:local",
    "ray": "bench.sweep.launchers.ray:ray_tasks",
    "slurm": "bench.sweep.launchers.slurm:slurm_array",
}


def launcher(name: str):
    """The launcher of that name (imported only when used: Ray and submitit are heavy)."""
    import importlib

    module, attr = LAUNCHERS[name].split(":")
    return getattr(importlib.import_module(module), attr)
