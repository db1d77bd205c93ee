"""Where runs train: local worker processes, a real local Ray cluster, a submitit job array
(its local executor: real subprocess jobs). In each, a worker is killed mid-sweep, and
nothing is lost or stored twice."""

from __future__ import annotations

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
from bench.sweep.launchers import LaunchOptions
from bench.sweep.runner import run_suite
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


# --- local workers ----------------------------------------------------------------------


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


def test_a_dead_worker_loses_no_run(tmp_path):
    from test_runner import _config

    task = DiesOnce(str(tmp_path / "died"), delay=2, eval_batches=1, eval_batch_size=8)
    runs = [(_config(seed), task) for seed in range(3)]
    counts = run_suite(runs, tmp_path, log=lambda *a, **k: None, launch=LaunchOptions(workers=2, threads=1))
    assert (tmp_path / "died").exists()  # a worker did die
    assert counts["ok"] == 3 and counts["failed"] == 0
    stored = lines(tmp_path)
    assert len(stored) == 3 and len({r["run_id"] for r in stored}) == 3


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
    sweep = cwbench("run", *SWEEP, "--results", str(tmp_path), "--launcher", "ray", "--ray-address", ray_cluster)
    killed = kill_one_while(sweep, "ray::_ray_execute")
    out, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, out
    stored = lines(tmp_path)
    assert len(stored) == 4 and len({r["run_id"] for r in stored}) == 4, out  # nothing lost, nothing twice
    assert {r["status"] for r in stored} == {"ok"}, out  # Ray ran the killed run again
    assert killed not in {r["worker"]["pid"] for r in stored}
    assert {r["worker"]["launcher"] for r in stored} == {"ray"}


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
    assert sweep.returncode == 0, out
    first = lines(tmp_path)
    assert sorted(r["status"] for r in first) == ["failed", "ok", "ok", "ok"], out
    assert "SLURM job" in next(r["reason"] for r in first if r["status"] == "failed")
    assert "1 failed" in out and "retried by the next invocation" in out

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
