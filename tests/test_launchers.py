"""Where runs train: local worker processes, a real local Ray cluster, a submitit job array
(its local executor: real subprocess jobs). In each, a worker is killed mid-sweep, and
nothing is lost or stored twice."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.store.results import ResultsStore
from bench.sweep.launchers import LaunchOptions, cores
from bench.sweep.runner import SweepOptions, run_suite
from tasks.copy import CopyTask

BIN = Path(sys.executable).parent
# four runs of a few seconds each: long enough to kill one mid-run
SWEEP = ["copy", "--archs", "rnn", "cwrnn/exponential", "--seeds", "2", "--steps", "150", "--budgets", "400",
         "--param", "delay=3", "--param", "variable_delay=false", "--param", "eval_batches=1",
         "--param", "eval_batch_size=16", "--no-leaderboard"]


def records(results: Path) -> list[dict]:
    return ResultsStore(results / "copy" / "runs.jsonl").load()


def lines(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / "copy" / "runs.jsonl").read_text().splitlines()]


def processes(pattern: str) -> list[int]:
    """pids whose command line (or process title) contains `pattern`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmdline:
            found.append(int(entry.name))
    return found


def kill_one_while(sweep: subprocess.Popen, pattern: str, after_s: float = 1.0, timeout_s: float = 120) -> int:
    """SIGKILL the first process matching `pattern` once it has run for `after_s` (mid-run)."""
    deadline = time.monotonic() + timeout_s
    first_seen: dict[int, float] = {}
    while time.monotonic() < deadline and sweep.poll() is None:
        for pid in processes(pattern):
            first_seen.setdefault(pid, time.monotonic())
            if time.monotonic() - first_seen[pid] >= after_s:
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.05)
    pytest.fail(f"no process matching {pattern!r} to kill while the sweep ran")


def cwbench(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "cwbench"), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "WANDB_MODE": "offline", **(env or {})})


needs_proc = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds processes through /proc")
# two workers on one core are refused (--workers is at most the cores): the pool tests need two
needs_two_cores = pytest.mark.skipif(cores() < 2, reason="runs two local workers")


# --- local workers ----------------------------------------------------------------------


@needs_two_cores
def test_workers_give_the_numbers_of_one_process(tmp_path):
    """Where a run trains does not change it: two worker processes, one thread each, store
    what the same runs store when trained here on one thread."""
    assert main(["run", *SWEEP, "--steps", "4", "--results", str(tmp_path / "here"), "--workers", "1",
                 "--threads", "1"]) == 0
    assert main(["run", *SWEEP, "--steps", "4", "--results", str(tmp_path / "pool"), "--workers", "2",
                 "--threads", "1"]) == 0
    here = {r["run_id"]: r for r in records(tmp_path / "here")}
    pool = {r["run_id"]: r for r in records(tmp_path / "pool")}
    assert here.keys() == pool.keys() and len(here) == 4
    for rid, record in pool.items():
        assert record["metrics"] == here[rid]["metrics"] and record["backend"] == here[rid]["backend"]
        assert record["worker"]["launcher"] == "local" and record["worker"]["pid"] != os.getpid()
        assert record["machine"]["torch_threads"] == 1
    assert {r["worker"]["pid"] for r in here.values()} == {os.getpid()}
    assert len({r["worker"]["pid"] for r in pool.values()}) <= 2


class DiesOnce(CopyTask):
    """Kills its worker process the first time any run of it starts (as the OOM killer would)."""

    def __init__(self, marker: str, **kwargs):
        super().__init__(**kwargs)
        self.marker = marker

    def datamodule(self, *args, **kwargs):
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(9)
        return super().datamodule(*args, **kwargs)


class AlwaysDies(CopyTask):
    """Kills its worker process whenever the run of seed 0 starts; the others train."""

    def datamodule(self, batch_size, seed, train_steps):
        if seed == 0:
            os._exit(9)
        return super().datamodule(batch_size, seed, train_steps)


@needs_two_cores
def test_a_dead_worker_costs_an_attempt_only_to_its_own_run(tmp_path):
    from test_runner import _config

    task = AlwaysDies(delay=2, eval_batches=1, eval_batch_size=8)
    runs = [(_config(seed), task) for seed in range(4)]
    two_workers = SweepOptions(launch=LaunchOptions(workers=2, threads=1))
    counts = run_suite(runs, tmp_path, two_workers, log=lambda *a, **k: None)
    assert counts["ok"] == 3 and counts["failed"] == 1, counts  # the queued and running others were not charged
    failed = [r for r in lines(tmp_path) if r["status"] == "failed"]
    assert [r["seed"] for r in failed] == [0] and "died twice" in failed[0]["reason"]
    assert "exit status 9" in failed[0]["reason"]


@needs_two_cores
def test_a_dead_worker_loses_no_run(tmp_path):
    from test_runner import _config

    task = DiesOnce(str(tmp_path / "died"), delay=2, eval_batches=1, eval_batch_size=8)
    runs = [(_config(seed), task) for seed in range(3)]
    two_workers = SweepOptions(launch=LaunchOptions(workers=2, threads=1))
    counts = run_suite(runs, tmp_path, two_workers, log=lambda *a, **k: None)
    assert (tmp_path / "died").exists()  # a worker did die
    assert counts["ok"] == 3 and counts["failed"] == 0
    stored = lines(tmp_path)
    assert len(stored) == 3 and len({r["run_id"] for r in stored}) == 3


def descendants(pid: int) -> list[int]:
    """pids of a process's children, their children, and so on (through /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def living(pids: list[int]) -> list[str]:
    """Those of pids still running (not zombies), with their command lines."""
    alive = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                # the whole command line: a checkout's path can push the interesting part past any cut
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                alive.append(f"{pid}: {command}")
        except (OSError, IndexError):
            continue
    return alive


def kill_the_driver_mid_run(tmp_path, marker: str, *args) -> list[str]:
    """Starts a long sweep, SIGKILLs its driver once `marker` processes train, and returns
    what of its process tree still runs 20 s later (the workers must look within a second)."""
    sweep = cwbench("run", *SWEEP, "--steps", "100000", "--results", str(tmp_path), *args)
    deadline = time.monotonic() + 120
    while sum(marker in line for line in living(descendants(sweep.pid))) < 2:
        if sweep.poll() is not None or time.monotonic() >= deadline:
            sweep.kill()  # first: communicate() on a sweep of 100,000 steps would wait for all of them
            pytest.fail(f"no two {marker!r} processes under the sweep: {sweep.communicate()[0][-2000:]}")
        time.sleep(0.2)
    time.sleep(1.0)  # inside their runs
    tree = descendants(sweep.pid)
    sweep.kill()
    sweep.wait()  # not communicate(): the pipe stays open while a child that inherited it lives
    sweep.stdout.close()
    deadline = time.monotonic() + 20
    while living(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = living(tree)
    for line in left:  # no stray processes for the tests that follow
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
    return left


@needs_proc
@needs_two_cores
def test_local_workers_die_with_a_killed_driver(tmp_path):
    assert kill_the_driver_mid_run(tmp_path, "spawn_main", "--workers", "2", "--threads", "1") == []


@needs_proc
def test_slurm_local_jobs_die_with_a_killed_driver(tmp_path):
    """--slurm cluster=local: the job array's processes go with the driver; the next invocation
    submits the runs again (on a real cluster the jobs run on: see the next test)."""
    left = kill_the_driver_mid_run(tmp_path, "submitit.core._submit", "--launcher", "slurm", "--slurm",
                                   "cluster=local", "--slurm", f"folder={tmp_path / 'jobs'}")
    assert left == []


def test_runs_an_earlier_invocation_submitted_are_collected_not_trained_again(tmp_path, capsys):
    """A killed driver's array jobs that finished (or still run, on a cluster) are collected
    by the next invocation from submitit's folder: here they are submitted as a driver would
    and it never collects them."""
    import submitit
    from test_runner import _config

    from bench.sweep.jobs import Job
    from bench.sweep.launchers import slurm

    task = CopyTask(delay=2, eval_batches=1, eval_batch_size=8)
    runs = [(_config(seed), task) for seed in range(2)]
    options = LaunchOptions("slurm", slurm={"cluster": "local", "folder": str(tmp_path / "jobs")})
    folder = slurm.slurm_folder(options.slurm)
    executor = submitit.AutoExecutor(folder=folder, cluster="local")
    jobs = [Job(config.run_id, config, task, "cpu") for config, task in runs]
    earlier = executor.map_array(slurm._slurm_execute, jobs, [1] * len(jobs))
    book = slurm.SubmittedRuns(folder.parent / "cwbench-runs")
    for array_job, job in zip(earlier, jobs):
        book.add(job.run_id, array_job.job_id, "local")
    pids = {array_job.result()["worker"]["pid"] for array_job in earlier}  # finished; its driver is gone
    counts = run_suite(runs, tmp_path / "results", SweepOptions(launch=options), log=lambda *a, **k: None)
    assert counts["ok"] == 2
    assert "2 runs submitted by an earlier invocation are collected" in capsys.readouterr().out
    assert {r["worker"]["pid"] for r in lines(tmp_path / "results")} == pids  # not trained again
    assert not list(book.folder.iterdir())  # collected: forgotten


# --- Ray: a real local cluster ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster():
    if not (BIN / "ray").exists():
        pytest.skip("ray is not installed in this environment")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    start = subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
                            str(port), "--num-cpus", "2", "--temp-dir", temp, "--disable-usage-stats",
                            "--include-dashboard", "false"], capture_output=True, text=True, timeout=120)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


@needs_proc
def test_ray_sweep_survives_a_killed_worker(tmp_path, ray_cluster):
    sweep = cwbench("run", *SWEEP, "--results", str(tmp_path), "--launcher", "ray", "--ray-address", ray_cluster,
                    env={"CWBENCH_CACHE": str(tmp_path / "cache")})  # Ray's messages: not in the home folder
    killed = kill_one_while(sweep, "ray::_ray_execute")
    out, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, out
    stored = lines(tmp_path)
    assert len(stored) == 4 and len({r["run_id"] for r in stored}) == 4, out  # nothing lost, nothing twice
    assert {r["status"] for r in stored} == {"ok"}, out  # Ray ran the killed run again
    assert killed not in {r["worker"]["pid"] for r in stored}
    assert {r["worker"]["launcher"] for r in stored} == {"ray"}


@needs_proc
def test_a_lost_ray_head_stops_the_sweep_within_seconds(tmp_path, ray_cluster):
    env = {"CWBENCH_CACHE": str(tmp_path / "cache")}
    sweep = cwbench("run", *SWEEP, "--steps", "100000", "--results", str(tmp_path), "--launcher", "ray",
                    "--ray-address", ray_cluster, env=env)
    deadline = time.monotonic() + 120
    while not processes("ray::_ray_execute"):
        if sweep.poll() is not None or time.monotonic() >= deadline:
            sweep.kill()  # first: communicate() on a sweep of 100,000 steps would wait for all of them
            pytest.fail(f"no Ray task of the sweep started: {sweep.communicate()[0][-2000:]}")
        time.sleep(0.2)
    subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120)
    out, _ = sweep.communicate(timeout=50)  # Ray's own driver would wait 60 s, then die with a state dump
    assert sweep.returncode == 1, out
    assert out.strip().splitlines()[-1].startswith(
        f"interrupted by the loss of the Ray cluster at {ray_cluster} (its head stopped answering"), out
    assert "rerun the same command to resume" in out and "state-dump" not in out, out
    assert not list((tmp_path / "copy" / "runs.jsonl.claims").glob("*.json"))  # its claims released


def test_ray_without_a_cluster_is_one_clear_error(tmp_path, capsys):
    port = free_port()  # nothing listens there
    assert main(["run", *SWEEP, "--results", str(tmp_path), "--launcher", "ray", "--ray-address",
                 f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot connect to the Ray cluster" in err and "ray start --head" in err
    assert not (tmp_path / "copy" / "runs.jsonl").exists() or records(tmp_path) == []


# --- SLURM: a submitit job array, run by its local executor -----------------------------


@needs_proc
def test_slurm_array_records_a_killed_job_as_failed_and_retries_it(tmp_path):
    slurm = ["--launcher", "slurm", "--slurm", "cluster=local", "--slurm", f"folder={tmp_path / 'jobs'}",
             "--slurm", "time=10"]
    sweep = cwbench("run", *SWEEP, "--results", str(tmp_path), *slurm)
    kill_one_while(sweep, "submitit.core._submit", after_s=2.0)
    out, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 1, out  # a run of this invocation failed
    first = lines(tmp_path)
    assert sorted(r["status"] for r in first) == ["failed", "ok", "ok", "ok"], out
    assert "SLURM job" in next(r["reason"] for r in first if r["status"] == "failed")
    assert "1 failed" in out and "retried by the next invocation" in out
    assert "error: 1 of the 4 runs trained by this command failed" in out

    again = cwbench("run", *SWEEP, "--results", str(tmp_path), *slurm)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    assert "3 already in the store, 1 to run" in out
    final = records(tmp_path)
    assert len(final) == 4 and {r["status"] for r in final} == {"ok"}
    assert {r["worker"]["launcher"] for r in final} == {"slurm"}


@pytest.mark.parametrize("args, words", [
    (["--launcher", "ray"], ["--launcher ray needs --ray-address"]),
    (["--ray-address", "127.0.0.1:1"], ["--ray-address is for --launcher ray"]),
    (["--slurm", "partition=gpu"], ["--slurm settings are for --launcher slurm"]),
    (["--launcher", "slurm", "--slurm", "partiton=gpu"], ["unknown SLURM setting 'partiton'"]),
    (["--launcher", "slurm", "--workers", "2"], ["--workers is for --launcher local"]),
    (["--backend", "lstm=compiled"], ["unknown lstm implementation 'compiled'", "choose auto or one of torch"]),
    (["--backend", "transformer=torch"], ["unknown architecture 'transformer'"]),
])
def test_bad_launch_settings_are_one_clear_error(tmp_path, capsys, args, words):
    assert main(["run", *SWEEP, "--results", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not (tmp_path / "copy").exists()


def test_slurm_without_slurm_says_how_to_test_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    assert main(["run", *SWEEP, "--results", str(tmp_path / "r"), "--launcher", "slurm"]) == 2
    assert not (tmp_path / "r").exists()
    err = capsys.readouterr().err.strip()
    assert "no SLURM here" in err and "--slurm cluster=local" in err


# --- two sweeps, one store --------------------------------------------------------------


def trained(out: str) -> int:
    return sum(int(m) for m in re.findall(r"^sweep: (\d+) of \d+ runs trained", out, flags=re.M))


def test_two_sweeps_on_one_store_never_train_a_run_twice(tmp_path):
    """Started together on the same store: each run is trained by one of them."""
    args = ["run", *SWEEP, "--seeds", "3", "--steps", "20", "--results", str(tmp_path), "--workers", "1"]
    first, second = cwbench(*args), cwbench(*args)
    outs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    stored = lines(tmp_path)
    assert len(stored) == 6 and len({r["run_id"] for r in stored}) == 6, outs
    assert trained(outs[0]) + trained(outs[1]) == 6, outs
