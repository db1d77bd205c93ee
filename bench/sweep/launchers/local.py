"""The local launchers: one run at a time in this process (`inline`), or worker processes
(`local_pool`) pinned to their share of the cores, each dying with the driver."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from bench.sweep.jobs import Job, execute, failed_record
from bench.sweep.launchers import LaunchOptions
from bench.sweep.threads import pin_threads

WATCH_S = 0.5  # how often a process that must die with the driver looks whether it still lives
ORPHANED = 75  # the exit status of a worker that found its driver gone




def inline(jobs: Iterator[Job], options: LaunchOptions) -> Iterator[tuple[Job, dict]]:
    """One run at a time in this process (the debugger-friendly way, and what tests use)."""
    for job in jobs:
        yield job, execute(job, "local")


def start_worker(threads: int, cpus: list[int] | None) -> None:
    """In each new worker process, before torch loads: its share of the cores and threads.
    Ctrl-C is the driver's to handle: it stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin_threads(threads)
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


