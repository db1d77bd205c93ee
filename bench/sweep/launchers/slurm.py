"""The SLURM launcher: a submitit job array; a killed driver's jobs are collected by the next
invocation (`SubmittedRuns`)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

from bench.store.files import atomic_write
from bench.sweep.jobs import Job, execute, failed_record
from bench.sweep.launchers import SLURM_KEYS, LaunchOptions
from bench.sweep.launchers.local import die_with
from models.errors import UserInputError
from tasks.base import cache_root

POLL_S = 0.5  # how often the SLURM launcher looks at its jobs (submitit caches the scheduler's answers)


def slurm_folder(settings: dict) -> Path:
    return Path(settings.get("folder") or cache_root() / "submitit") / "%j"


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


