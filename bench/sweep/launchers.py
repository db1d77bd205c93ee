"""Where a sweep's runs train: here, in local worker processes, as Ray tasks on a Ray
cluster, or as a SLURM job array (submitit). Each launcher is a generator: it takes jobs
(bench/sweep/jobs.py) from an iterator as it has room for them and yields (job, record) as runs
finish, in any order. Records always come back to the one driver process, which alone
writes the store (bench/sweep/runner.py). A run whose worker died comes back as a failed
record (retried by the next invocation), never silently lost; closing the generator
(an interrupt, an error in the driver) stops what is still running.

What trains on this machine dies with the driver, even a driver killed with SIGKILL that
can stop nothing itself: local workers and the processes of submitit's local executor
watch it (`die_with`). On a real SLURM cluster a killed driver's array jobs keep running;
the next invocation of the same sweep collects what they stored in submitit's folder and
waits for those still queued or running, instead of training them again (`SubmittedRuns`).
A Ray cluster that goes away is noticed within seconds (`ClusterLost`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.store.files import atomic_write
from bench.sweep.interrupt import Interrupted
from bench.sweep.jobs import Job, execute, failed_record
from models.errors import UserInputError

POLL_S = 0.5  # how often the SLURM launcher looks at its jobs (submitit caches the scheduler's answers)
WATCH_S = 0.5  # how often a process that must die with the driver looks whether it still lives
ORPHANED = 75  # the exit status of a worker that found its driver gone


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


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def driver_alive(driver: dict) -> bool:
    """Does the driver ({"pid", "start"} of bench.store.claims.me()) still run? (A reused pid has
    another start; a zombie, dead but not yet reaped by its parent, does not run.)"""
    from bench.store.claims import _proc_stat, process_start

    try:
        os.kill(driver["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(driver["pid"])
    if fields and fields[0] == "Z":  # killed, not yet reaped by its own parent
        return False
    start = process_start(driver["pid"])
    return start is None or driver["start"] in (None, start)


def die_with(driver: dict) -> None:
    """In a process that must not outlive the driver, even one killed with SIGKILL (which
    can stop nothing itself): the kernel's parent-death signal where the driver is the
    parent (Linux), and everywhere a thread that looks every WATCH_S and exits once the
    driver is gone (a grandchild, another OS, a driver that died before the signal was set)."""
    if sys.platform.startswith("linux") and os.getppid() == driver["pid"]:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch():
        while driver_alive(driver):
            time.sleep(WATCH_S)
        os._exit(ORPHANED)  # its run's record has nobody to go to

    if not driver_alive(driver):
        os._exit(ORPHANED)
    threading.Thread(target=watch, name="cwbench-driver-watch", daemon=True).start()


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


def _pool_worker(conn, threads: int, cpus: list[int] | None, driver: dict) -> None:
    """A local worker: runs the jobs the driver sends through its pipe, one at a time, and
    sends back each record; None or a closed pipe ends it."""
    start_worker(threads, cpus)
    die_with(driver)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(execute(job, "local"))


class _Worker:
    """One worker process, its pipe and the job it is running (None: idle)."""

    def __init__(self, context, threads: int, cpus: list[int] | None):
        from bench.store.claims import me

        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=_pool_worker, args=(theirs, threads, cpus, me()),
                                       name="cwbench-worker")
        self.process.start()
        theirs.close()
        self.job: Job | None = None

    def send(self, job: Job | None) -> None:
        self.job = job
        with contextlib.suppress(OSError):  # died already: its sentinel says so, and the run goes again
            self.conn.send(job)


def died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        return f"killed by {name}" + (" (out of memory?)" if exitcode == -signal.SIGKILL else "")
    return f"exit status {exitcode}"


def local_pool(jobs: Iterator[Job], options: LaunchOptions) -> Iterator[tuple[Job, dict]]:
    """`workers` processes (spawned: a fork of a process that has run torch inherits its
    thread pools' state; started as runs arrive, so never more than there are runs), each
    sent one run at a time through its own pipe. A worker that dies costs an attempt only
    to the run it was running: that run goes to a new worker, and is recorded failed when
    its worker dies a second time; the other workers go on."""
    context = multiprocessing.get_context("spawn")
    shares = core_shares(options.workers, options.threads)
    slots: list[_Worker | None] = [None] * options.workers
    attempts: dict[str, int] = {}
    requeued: list[Job] = []  # runs whose worker died once: sent again first
    source = iter(jobs)
    try:
        while True:
            for slot, worker in enumerate(slots):
                if worker is not None and worker.job is not None:
                    continue
                job = requeued.pop(0) if requeued else next(source, None)
                if job is None:
                    break
                if worker is None:
                    worker = slots[slot] = _Worker(context, options.threads, shares[slot])
                attempts[job.run_id] = attempts.get(job.run_id, 0) + 1
                worker.send(job)
            busy = [(slot, w) for slot, w in enumerate(slots) if w is not None and w.job is not None]
            if not busy:
                return
            ready = set(multiprocessing.connection.wait([w.conn for _, w in busy]
                                                        + [w.process.sentinel for _, w in busy]))
            for slot, worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                job, worker.job = worker.job, None
                try:  # a record sent just before the worker died is still in the pipe
                    record = worker.conn.recv() if worker.conn.poll() else None
                except (EOFError, OSError):
                    record = None
                if record is not None:
                    yield job, record
                    continue
                worker.process.join()
                how = died(worker.process.exitcode)
                worker.conn.close()
                slots[slot] = None  # a new worker takes its place when there is work
                if attempts[job.run_id] >= 2:
                    yield job, failed_record(job, f"its worker process died twice (last {how}; killed, or out "
                                                  "of memory?)")
                else:
                    requeued.append(job)
    finally:
        _stop([w for w in slots if w is not None])


def _stop(workers: list[_Worker]) -> None:
    """Stop the workers now, running runs included (their records were not written: they will
    be trained again by the next invocation). SIGKILL, because Lightning's trainer takes
    SIGTERM as a request to finish its epoch."""
    for worker in workers:
        if worker.process.is_alive():
            if worker.job is None:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)  # idle: it ends by itself
            else:
                worker.process.kill()
    for worker in workers:
        worker.process.join(5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()


def local(jobs: Iterator[Job], options: LaunchOptions) -> Iterator[tuple[Job, dict]]:
    if options.workers == 1:
        return inline(jobs, options)
    return local_pool(jobs, options)


# ---------------------------------------------------------------------------------------
# ray: tasks on an existing Ray cluster

RAY_RETRIES = 3  # a task whose worker or node dies is run again by Ray this many times
RAY_WAIT_S = 2.0  # how long the driver waits for a Ray task before it looks whether the head still answers


class ClusterLost(Interrupted):
    """The cluster that trains the sweep went away: the sweep stops as it does on Ctrl-C
    (what finished is stored; a rerun resumes), with its own words and exit status."""

    def __init__(self, what: str):
        super().__init__(None, cause=f"the loss of {what}")


def head_answers(address: str) -> bool:
    """Does anything still listen at the Ray head's HOST:PORT (its GCS)? A refused connection
    is a head that stopped; a slow one (a busy head) still counts as there."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except TimeoutError:
        return True
    except OSError:
        return False
    return True


def ray_log() -> Path:
    cache = Path(os.environ.get("CWBENCH_CACHE", Path.home() / ".cache" / "cwbench"))
    return cache / "ray-driver.log"


@contextlib.contextmanager
def ray_output_aside(path: Path):
    """Ray's core (C++, in this process) writes to file descriptor 2: when its cluster goes,
    dozens of lines of its state. Those go to `path`; the sweep's own messages (Python's
    sys.stderr) stay on the terminal. Restored on the way out, except after a lost cluster:
    Ray's core says it all again at exit."""
    try:
        sys.stderr.flush()
        terminal = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no real stderr (captured, or closed): nothing to move
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        os.close(terminal)
        yield
        return
    original = sys.stderr
    os.dup2(aside, 2)
    os.close(aside)
    sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1)
    restore = True
    try:
        yield
    except ClusterLost:
        restore = False
        raise
    finally:
        if restore:
            sys.stderr.flush()
            sys.stderr.close()
            os.dup2(terminal, 2)
            sys.stderr = original
        os.close(terminal)


def messages_aside(path: Path) -> None:
    """Ray's driver prints the errors its cluster publishes (a dead raylet's last log lines,
    twice: at once and at exit) on stdout, amid the sweep's lines: they go to `path` too.
    Ray's private printer, replaced where it is found."""
    from ray._private import worker

    original = getattr(worker, "print_worker_logs", None)
    if original is None or getattr(original, "cwbench_aside", False):
        return

    def aside(data, sink, *args, **kwargs):
        with contextlib.suppress(OSError), open(path, "a") as log:
            original(data, log, *args, **kwargs)

    aside.cwbench_aside = True
    worker.print_worker_logs = aside


def ray_tasks(jobs: Iterator[Job], options: LaunchOptions) -> Iterator[tuple[Job, dict]]:
    with ray_output_aside(ray_log()):
        yield from _ray_tasks(jobs, options)


def _ray_tasks(jobs: Iterator[Job], options: LaunchOptions) -> Iterator[tuple[Job, dict]]:
    """Each run a Ray task declaring its CPUs (and a GPU on cuda); Ray retries a task lost
    with its worker or node. At most twice as many tasks in flight as the cluster has
    room for, so that the driver claims runs as they start, not all at once. The driver
    waits RAY_WAIT_S at a time and looks between waits whether the head still answers: a
    lost head stops the sweep within seconds (Ray's own driver would wait a minute, then
    kill the process), as ClusterLost."""
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
    messages_aside(ray_log())
    running: dict = {}
    lost = False
    try:
        largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=0)
        if options.ray_cpus > largest:  # no node could ever start such a task: the sweep would wait forever
            raise UserInputError(f"--ray-cpus {options.ray_cpus:g} is more than any node of the Ray cluster at "
                                 f"{options.ray_address} has ({largest:g} CPUs): give at most {largest:g}")
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
            ready, _ = ray.wait(list(running), num_returns=1, timeout=RAY_WAIT_S)
            if not ready and not head_answers(options.ray_address):
                lost = True
                raise ClusterLost(f"the Ray cluster at {options.ray_address} (its head stopped answering; Ray's own "
                                  f"messages are in {ray_log()})")
            for ref in ready:
                job = running.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as err:  # retries spent, or the task could not run at all
                    record = failed_record(job, f"Ray task lost ({type(err).__name__}: {str(err).splitlines()[0]})")
                yield job, record
    finally:
        if not lost:  # with the head gone these calls would only wait for it
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


class SubmittedRuns:
    """Which SLURM job trains which run, kept in submitit's folder (cwbench-runs/<run id>.json:
    the job id and the cluster), from its submission until its record is stored: a driver
    killed meanwhile leaves them, and the next invocation of the sweep collects those jobs'
    records (or waits for them) instead of training the runs again."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.json"

    def add(self, run_id: str, job_id: str, cluster: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self._path(run_id), json.dumps({"job_id": job_id, "cluster": cluster}) + "\n")

    def get(self, run_id: str) -> dict | None:
        try:
            data = json.loads(self._path(run_id).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("job_id"), str) else None

    def drop(self, run_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(run_id).unlink()


# SLURM states of a job that may still store a result (sacct/squeue, as submitit reports them)
SLURM_ALIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING")


def earlier_job(submitit, book: SubmittedRuns, job: Job, folder: Path, cluster: str):
    """The job an earlier invocation submitted for this run, where it finished with a record
    or (on a real cluster) is still queued or running; None where the run must be submitted."""
    entry = book.get(job.run_id)
    if entry is None or entry.get("cluster") != cluster:
        return None
    kind = submitit.LocalJob if cluster == "local" else submitit.SlurmJob
    earlier = kind(folder=folder, job_id=entry["job_id"])
    if earlier.paths.result_pickle.exists():
        return earlier
    # the local executor's jobs die with their driver (die_with): only a cluster's may still run
    if cluster != "local" and str(earlier.state).split()[0] in SLURM_ALIVE:
        return earlier
    book.drop(job.run_id)
    return None


def slurm_array(jobs: Iterator[Job], options: LaunchOptions) -> Iterator[tuple[Job, dict]]:
    """All the runs as one job array (one run per array task); records are collected as jobs
    end. A job that dies (killed, out of time, node failure) is a failed record, retried
    by the next invocation. A run that an earlier, killed invocation submitted is not
    submitted again: its job's record is collected, or waited for while it still runs.
    The local executor's processes (--slurm cluster=local) die with the driver."""
    try:
        import submitit
    except ImportError:
        raise UserInputError("--launcher slurm needs submitit: pip install submitit (the nox sessions install it)"
                             ) from None
    from bench.store.claims import me

    settings = dict(options.slurm)
    cluster = settings.pop("cluster", "slurm")
    folder = slurm_folder(settings)
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    parameters = {SLURM_KEYS[k]: v for k, v in settings.items() if SLURM_KEYS.get(k)}
    parameters.setdefault("cpus_per_task", options.threads or 1)
    parameters.setdefault("timeout_min", 60)
    executor.update_parameters(name="cwbench", **parameters)
    batch = list(jobs)
    if not batch:
        return
    book = SubmittedRuns(folder.parent / "cwbench-runs")
    pending = {}
    for job in batch:
        earlier = earlier_job(submitit, book, job, folder, cluster)
        if earlier is not None:
            pending[earlier] = job
    collected = {job.run_id for job in pending.values()}
    fresh = [job for job in batch if job.run_id not in collected]
    if pending:
        print(f"{len(pending)} runs submitted by an earlier invocation are collected from {folder.parent} "
              "instead of being trained again", flush=True)
    threads = options.threads or int(parameters["cpus_per_task"])
    driver = me() if cluster == "local" else None  # a cluster's job runs on another host: it outlives us
    try:
        if fresh:
            submitted = executor.map_array(_slurm_execute, fresh, [threads] * len(fresh), [driver] * len(fresh))
            for array_job, job in zip(submitted, fresh):
                book.add(job.run_id, array_job.job_id, cluster)
                pending[array_job] = job
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
                book.drop(job.run_id)  # stored by now
            if pending:
                time.sleep(POLL_S)
    finally:
        for array_job, job in pending.items():
            array_job.cancel(check=False)
            book.drop(job.run_id)


def _slurm_execute(job: Job, threads: int, driver: dict | None = None) -> dict:
    from dataclasses import replace

    if driver is not None:
        die_with(driver)
    return execute(replace(job, threads=job.threads or threads), "slurm")


# name -> generator(jobs, options) -> (job, record) as runs finish
LAUNCHERS = {
    "local": local,
    "ray": ray_tasks,
    "slurm": slurm_array,
}
