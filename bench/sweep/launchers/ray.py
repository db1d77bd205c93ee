"""The Ray launcher: each run a Ray task on an existing cluster; a lost head stops the sweep
within seconds (`ClusterLost`)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.sweep.interrupt import Interrupted
from bench.sweep.jobs import Job, execute, failed_record
from bench.sweep.launchers import LaunchOptions
from models.errors import UserInputError
from tasks.base import cache_root

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
    return cache_root() / "ray-driver.log"


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


