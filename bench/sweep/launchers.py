"""Where a sweep's runs train: here, in local worker processes, as Ray tasks on a Ray
cluster, or as a SLURM job array (submitit). Each launcher is a generator: it takes jobs
(bench/sweep/jobs.py) from an iterator as it has room for them and yields (job, record) as runs
finish, in any order. Records always come back to the one driver process, which alone
writes the store (bench/sweep/runner.py). A run whose worker died comes back as a failed
record (retried by the next invocation), never silently lost; closing the generator
(an interrupt, an error in the driver) stops what is still running.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.sweep.jobs import Job, execute, failed_record
from models.errors import UserInputError

POLL_S = 0.5  # how often the SLURM launcher looks at its jobs (submitit caches the scheduler's answers)


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
        unknown = sorted(set(self.slurm) - set(SLURM_KEYS))
        if unknown:
            raise UserInputError(f"unknown SLURM setting '{unknown[0]}': the settings are {', '.join(SLURM_KEYS)}")
        if self.launcher == "slurm":
            cluster = self.slurm.get("cluster", "slurm")
            if cluster not in ("slurm", "local"):
                raise UserInputError(f"bad SLURM setting cluster={cluster}: use slurm, or local to run the job "
                                     "array as local processes")
            if cluster == "slurm" and not shutil.which("sbatch"):
                raise UserInputError("--launcher slurm: no SLURM here (sbatch not found): run from a cluster's "
                                     "login node, or pass --slurm cluster=local to run the job array as local "
                                     "processes")


def check_reachable(address: str) -> None:
    """A Ray head that is not there is said at once (ray.init would wait minutes for it)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserInputError(f"bad --ray-address '{address}': give the head's HOST:PORT, e.g. 127.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise UserInputError(f"cannot connect to the Ray cluster at {address} ({err.strerror or err}): start one "
                             "with `ray start --head` and pass its address (HOST:PORT) to --ray-address") from None


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
    small = all(job.config["params"] <= SMALL_RUN_PARAMS for job in jobs)
    return cores() if small else 1


# ---------------------------------------------------------------------------------------
# local: this process (one worker), or worker processes


def inline(jobs: Iterator[Job], options: LaunchOptions) -> Iterator[tuple[Job, dict]]:
    """One run at a time in this process (the debugger-friendly way, and what tests use)."""
    for job in jobs:
        yield job, execute(job, "local")


def start_worker(threads: int, cpus: list[int] | None) -> None:
    """In each new worker process, before torch loads: its share of the cores and threads.
    Ctrl-C is the driver's to handle: it stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if cpus:
        os.sched_setaffinity(0, cpus)


def core_shares(workers: int, threads: int) -> list[list[int] | None]:
    """Disjoint cores for each worker where there are enough, so workers do not preempt each
    other; otherwise no pinning (the OS shares them)."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return [None] * workers
    if workers * threads > len(available):
        return [None] * workers
    return [available[i * threads:(i + 1) * threads] for i in range(workers)]


def local_pool(jobs: Iterator[Job], options: LaunchOptions) -> Iterator[tuple[Job, dict]]:
    """`workers` processes (spawned: a fork of a process that has run torch inherits its
    thread pools' state), each running runs one after another. A worker that dies takes
    the pool down with it; the runs it held are sent once more to a new pool, and a run
    whose workers die twice is recorded failed."""
    workers, threads = options.workers, options.threads
    context = multiprocessing.get_context("spawn")
    shares = core_shares(workers, threads)
    attempts: dict[str, int] = {}
    pending: list[Job] = []  # sent again after a pool broke
    source = iter(jobs)
    while True:
        worker_cpus = context.Queue()  # one share of cores per worker process
        for share in shares:
            worker_cpus.put(share)
        pool = futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_pooled_worker,
                                           initargs=(threads, worker_cpus))
        running: dict[futures.Future, Job] = {}
        broken = False
        try:
            while True:
                while len(running) < 2 * workers:  # a run waiting for each worker: no idle gap
                    job = pending.pop(0) if pending else next(source, None)
                    if job is None:
                        break
                    attempts[job.run_id] = attempts.get(job.run_id, 0) + 1
                    running[pool.submit(execute, job, "local")] = job
                if not running:
                    return
                done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    job = running.pop(future)
                    try:
                        yield job, future.result()
                    except futures.process.BrokenProcessPool:
                        broken = True
                        if attempts[job.run_id] >= 2:
                            yield job, failed_record(job, "its worker process died twice (killed, or out of "
                                                          "memory?)")
                        else:
                            pending.append(job)
                if broken:
                    pending.extend(running.values())  # lost with the pool: run again
                    break
        finally:
            _stop(pool)


def _start_pooled_worker(threads: int, worker_cpus) -> None:
    start_worker(threads, worker_cpus.get())


def _stop(pool: futures.ProcessPoolExecutor) -> None:
    """Stop a pool now, running runs included (their records were not written: they will be
    trained again by the next invocation). SIGKILL, because Lightning's trainer takes SIGTERM
    as a request to finish its epoch."""
    for process in list(getattr(pool, "_processes", {}).values()):
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def local(jobs: Iterator[Job], options: LaunchOptions) -> Iterator[tuple[Job, dict]]:
    if options.workers == 1:
        return inline(jobs, options)
    return local_pool(jobs, options)


# ---------------------------------------------------------------------------------------
# ray: tasks on an existing Ray cluster

RAY_RETRIES = 3  # a task whose worker or node dies is run again by Ray this many times


def ray_tasks(jobs: Iterator[Job], options: LaunchOptions) -> Iterator[tuple[Job, dict]]:
    """Each run a Ray task declaring its CPUs (and a GPU on cuda); Ray retries a task lost
    with its worker or node. At most twice as many tasks in flight as the cluster has
    room for, so that the driver claims runs as they start, not all at once."""
    try:
        import ray
    except ImportError:
        raise UserInputError("--launcher ray needs Ray: pip install ray (the nox sessions install it)") from None
    try:
        ray.init(address=options.ray_address, logging_level="WARNING", log_to_driver=False,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise UserInputError(f"cannot connect to the Ray cluster at {options.ray_address} ({err}): start one with "
                             "`ray start --head` and pass its address (HOST:PORT) to --ray-address") from None
    running: dict = {}
    try:
        remote = None
        room = max(1, int(ray.cluster_resources().get("CPU", 1) // options.ray_cpus))
        threads = options.threads or max(1, int(options.ray_cpus))
        source = iter(jobs)
        while True:
            while len(running) < 2 * room:
                job = next(source, None)
                if job is None:
                    break
                if remote is None:  # one device for the whole sweep
                    remote = ray.remote(num_cpus=options.ray_cpus, num_gpus=1 if job.device == "cuda" else 0,
                                        max_retries=RAY_RETRIES, retry_exceptions=False)(_ray_execute)
                running[remote.remote(job, threads)] = job
            if not running:
                return
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                job = running.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as err:  # retries spent, or the task could not run at all
                    record = failed_record(job, f"Ray task lost ({type(err).__name__}: {str(err).splitlines()[0]})")
                yield job, record
    finally:
        for ref in running:  # stopped early: what still runs would be trained for nothing
            ray.cancel(ref, force=True)
        ray.shutdown()


def _ray_execute(job: Job, threads: int) -> dict:
    from dataclasses import replace

    return execute(replace(job, threads=job.threads or threads), "ray")


# ---------------------------------------------------------------------------------------
# slurm: a submitit job array

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


def slurm_folder(settings: dict) -> Path:
    cache = Path(os.environ.get("CWBENCH_CACHE", Path.home() / ".cache" / "cwbench"))
    return Path(settings.get("folder") or cache / "submitit") / "%j"


def slurm_array(jobs: Iterator[Job], options: LaunchOptions) -> Iterator[tuple[Job, dict]]:
    """All the runs as one job array (one run per array task); records are collected as jobs
    end. A job that dies (killed, out of time, node failure) is a failed record, retried
    by the next invocation."""
    try:
        import submitit
    except ImportError:
        raise UserInputError("--launcher slurm needs submitit: pip install submitit (the nox sessions install it)"
                             ) from None
    settings = dict(options.slurm)
    cluster = settings.pop("cluster", "slurm")
    executor = submitit.AutoExecutor(folder=slurm_folder(settings), cluster=cluster)
    parameters = {SLURM_KEYS[k]: v for k, v in settings.items() if SLURM_KEYS.get(k)}
    parameters.setdefault("cpus_per_task", options.threads or 1)
    parameters.setdefault("timeout_min", 60)
    executor.update_parameters(name="cwbench", **parameters)
    batch = list(jobs)
    if not batch:
        return
    threads = options.threads or int(parameters["cpus_per_task"])
    submitted = executor.map_array(_slurm_execute, batch, [threads] * len(batch))
    pending = dict(zip(submitted, batch))
    try:
        while pending:
            for array_job in [j for j in pending if j.done()]:
                job = pending.pop(array_job)
                try:
                    record = array_job.result()
                except Exception as err:  # submitit's UncompletedJobError / FailedJobError: the job died
                    reason = str(err).strip().splitlines()
                    record = failed_record(job, f"SLURM job {array_job.job_id} did not finish ("
                                                f"{type(err).__name__}: {reason[0] if reason else ''})")
                yield job, record
            if pending:
                time.sleep(POLL_S)
    finally:
        for array_job in pending:
            array_job.cancel(check=False)


def _slurm_execute(job: Job, threads: int) -> dict:
    from dataclasses import replace

    return execute(replace(job, threads=job.threads or threads), "slurm")


# name -> generator(jobs, options) -> (job, record) as runs finish
LAUNCHERS = {
    "local": local,
    "ray": ray_tasks,
    "slurm": slurm_array,
}
