"""Fault injection: bad records, bad parameters, bad results folders, signals, leftovers.

Each test is one probe of a hostile user: it gets one error line naming the problem and
the fix, a non-zero status, and no finished run is lost or silently miscounted.
"""

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main, parser
from bench.store import results as store_module
from bench.store.results import ResultsStore
from bench.sweep.launchers import cores

REPO = Path(__file__).resolve().parent.parent
TINY = ["--archs", "rnn", "--budgets", "400", "--seeds", "2", "--steps", "2", "--param", "delay=3",
        "--param", "variable_delay=false", "--no-leaderboard"]


def run_tiny(results, *extra):
    return main(["run", "copy", "--results", str(results), *TINY, *extra])


def one_error_line(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for word in words:
        assert word in err, err
    return err


def stored(results):
    path = results / "copy" / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def counted(results) -> list[int]:
    """n of each leaderboard row."""
    with open(results / "copy" / "leaderboard.csv") as f:
        return [int(row["n"]) for row in csv.DictReader(f)]


# --- records that parse but are not valid -------------------------------------------------

@pytest.fixture
def store_with_two_runs(tmp_path):
    assert run_tiny(tmp_path) == 0
    return tmp_path


@pytest.mark.parametrize("edit, reason", [
    (lambda r: r.pop("model"), "field 'model' is missing"),
    (lambda r: r.update(run_id=["a", "b"]), "field 'run_id' is ['a', 'b'], not a string"),
    (lambda r: r.update(metrics="0.99"), "field 'metrics' is '0.99', not an object"),
    (lambda r: r["metrics"].update(recall_accuracy="0.99"), "metric 'recall_accuracy' is '0.99'"),
    (lambda r: r["metrics"].update(recall_accuracy=None), "metric 'recall_accuracy' is None"),
    (lambda r: r.update(seed="0"), "field 'seed' is '0', not an integer"),
    (lambda r: r.update(status="done"), "status 'done' is not one of ok, diverged, failed"),
])
def test_an_invalid_record_is_named_by_line_and_never_counted(store_with_two_runs, capsys, edit, reason):
    results = store_with_two_runs
    path = results / "copy" / "runs.jsonl"
    records = stored(results)
    edit(records[1])
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    before = path.read_text()
    capsys.readouterr()
    # the runner refuses the store before training anything, and leaves it as it is
    assert run_tiny(results, "--seeds", "3") == 2
    one_error_line(capsys, f"{path} line 2 is not a valid run record", reason, "repair or delete that line")
    assert path.read_text() == before
    # the leaderboard counts the valid run only, and says what it left out
    assert main(["leaderboard", "copy", "--results", str(results)]) == 0
    board = (results / "copy" / "leaderboard.md").read_text()
    assert "Left out: 1 stored lines" in board and f"line 2: {reason}" in board
    assert "warning: " in capsys.readouterr().out
    assert counted(results) == [1]


def test_a_duplicate_run_id_is_counted_once(store_with_two_runs, capsys):
    results = store_with_two_runs
    path = results / "copy" / "runs.jsonl"
    first = path.read_text().splitlines()[0]
    with open(path, "a") as f:
        f.write(first + "\n")
    assert main(["leaderboard", "copy", "--results", str(results)]) == 0
    board = (results / "copy" / "leaderboard.md").read_text()
    assert "line 1: run_id" in board and "again at line 3" in board
    assert counted(results) == [2]  # not 3
    capsys.readouterr()
    assert run_tiny(results) == 2
    one_error_line(capsys, "line 1 is not a valid run record", "again at line 3")


# --- parameters checked before anything trains ---------------------------------------------

@pytest.mark.parametrize("param, words", [
    ("eval_batches=0", ["bad eval_batches 0", "--param eval_batches=N"]),
    ("eval_batch_size=0", ["bad eval_batch_size 0", "--param eval_batch_size=N"]),
    ("delay=[]", ["task parameter delay is an empty list", "--param delay=VALUE"]),
    ("variable_delay=maybe", ["bad variable_delay 'maybe'"]),
    ("dealy=20", ["unknown parameter 'dealy' for task copy: its parameters are delay, variable_delay"]),
])
def test_bad_task_parameters_stop_the_sweep_before_training(tmp_path, capsys, param, words):
    assert run_tiny(tmp_path, "--param", param) == 2
    one_error_line(capsys, *words)
    assert stored(tmp_path) == []


@pytest.mark.parametrize("args", [["run", "../../copy"], ["run", "suites/copy"], ["leaderboard", "../suites/copy"]])
def test_a_task_is_a_name_never_a_path(tmp_path, capsys, args):
    assert main([*args, "--results", str(tmp_path)]) == 2
    one_error_line(capsys, "unknown task", "choose one of")
    assert list(tmp_path.iterdir()) == []


# --- the results folder --------------------------------------------------------------------

def test_a_folder_where_the_store_should_be(tmp_path, capsys):
    (tmp_path / "copy" / "runs.jsonl").mkdir(parents=True)
    assert run_tiny(tmp_path) == 2
    one_error_line(capsys, "runs.jsonl is a folder, not a file", "--results")


def test_results_pointing_at_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert run_tiny(tmp_path / "file") == 2
    one_error_line(capsys, "is a file, not a folder", "--results")


def test_a_read_only_results_folder_is_refused_before_training(tmp_path, capsys, monkeypatch):
    # as root every folder is writable, so the probe write is what fails here
    def refuse(folder):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store_module, "probe_write", refuse)
    assert run_tiny(tmp_path) == 2
    one_error_line(capsys, "is not writable (Permission denied)", "--results")
    assert stored(tmp_path) == []


def test_a_full_disk_is_refused_before_training(tmp_path, capsys, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(store_module.shutil, "disk_usage", lambda path: real(path)._replace(free=1 << 20))
    assert run_tiny(tmp_path) == 2
    one_error_line(capsys, "no room in results folder", "1 MB free")


def test_a_run_that_trained_but_could_not_be_stored_is_kept(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setenv("CWBENCH_CACHE", str(tmp_path / "cache"))

    def disk_full(fd, line):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "append_line", disk_full)
    assert run_tiny(results) == 2
    err = one_error_line(capsys, "No space left on device", "the finished run is kept in", "cat ")
    kept = Path(re.search(r"kept in (\S+):", err).group(1))
    record = json.loads(kept.read_text())
    assert record["status"] == "ok" and record["task"] == "copy"
    monkeypatch.undo()
    path = results / "copy" / "runs.jsonl"
    assert path.read_text() == ""  # nothing of the failed append is left
    with open(path, "a") as f:
        f.write(kept.read_text())  # the recovery the message names (`cat KEPT >> STORE`)
    assert [r["run_id"] for r in ResultsStore(path).load()] == [record["run_id"]]
    assert ResultsStore(path).finished_ids() == {record["run_id"]}


# --- leftovers, modes, atomic generated files ----------------------------------------------

def test_leftover_temporary_files_go_and_modes_stay(store_with_two_runs):
    results = store_with_two_runs
    path = results / "copy" / "runs.jsonl"
    leftover = path.parent / ".runs.jsonl.killed.tmp"
    leftover.write_text("half a record")
    os.chmod(path, 0o640)
    assert run_tiny(results) == 0  # nothing to run: the leftover goes at the start all the same
    assert not leftover.exists()
    assert run_tiny(results, "--seeds", "3") == 0 and len(stored(results)) == 3
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_new_store_gets_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        assert run_tiny(tmp_path) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "copy" / "runs.jsonl").stat().st_mode & 0o777 == 0o644


def test_leaderboard_files_are_replaced_whole(store_with_two_runs, monkeypatch):
    results = store_with_two_runs
    assert main(["leaderboard", "copy", "--results", str(results)]) == 0
    before = {p.name: p.read_bytes() for p in (results / "copy").glob("leaderboard.*")}

    def crash(*args):
        raise OSError(5, "I/O error")

    monkeypatch.setattr("bench.store.files.os.replace", crash)
    with pytest.raises(OSError):
        main(["leaderboard", "copy", "--results", str(results)])
    assert {p.name: p.read_bytes() for p in (results / "copy").glob("leaderboard.*")} == before
    assert not list((results / "copy").glob(".*.tmp"))


# --- messages name flags that exist ----------------------------------------------------------

def known_flags() -> set[str]:
    """Every option of `cwbench` and its subcommands, theirs too (`cwbench perf overhead`)."""
    import argparse

    commands, todo = [], [parser()]
    while todo:
        command = todo.pop()
        commands.append(command)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += action.choices.values()
    return {s for command in commands for a in command._actions for s in a.option_strings}


def test_every_flag_a_message_names_exists():
    named = set()
    sources = [*REPO.glob("bench/**/*.py"), *REPO.glob("models/*.py")]  # tasks/: tests/test_hints.py
    for path in [p for p in sources if p.name != "provenance.py"]:  # provenance's are git's own flags
        for flag in re.findall(r"[\"'][^\"'\n]*?(--[a-z][a-z-]*)", path.read_text()):
            named.add((flag, path.name))
    assert named, "the scan found no flag at all"
    others = {"--head", "--porcelain"}  # `ray start --head` (no Ray cluster), `git status --porcelain`
    unknown = sorted((flag, where) for flag, where in named if flag not in known_flags() | others)
    assert not unknown, f"messages name flags that do not exist: {unknown}"


# --- signals ---------------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("signum, status, workers", [
    (signal.SIGTERM, 143, "1"), (signal.SIGINT, 130, "1"),
    pytest.param(signal.SIGTERM, 143, "2", marks=pytest.mark.skipif(cores() < 2, reason="runs two local workers")),
])
def test_a_signal_stops_the_sweep_cleanly_and_says_what_was_stored(tmp_path, signum, status, workers):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "bench", "run", "copy", "--results", str(tmp_path), "--archs", "rnn",
            "--budgets", "400", "--seeds", "3", "--steps", "100000", "--param", "delay=3",
            "--param", "variable_delay=false", "--no-leaderboard", "--workers", workers]
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "runs in the suite" in process.stdout.readline()  # printed just before the first run starts
    time.sleep(3 if workers == "1" else 8)  # inside the first run's training (100000 steps)
    pool = [pid for pid in children(process.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()] \
        if workers != "1" and Path("/proc/self/stat").exists() else []
    assert pool or workers == "1"
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    time.sleep(1)  # SIGKILLed workers are gone by now
    for pid in pool:  # the workers stop with the sweep: no run goes on training for nothing
        alive = Path(f"/proc/{pid}/status")
        assert not alive.exists() or "zombie" in alive.read_text(), alive.read_text()
    assert process.returncode == status, err
    name = signal.Signals(signum).name
    assert f"interrupted by {name}: 0 runs stored by this command; rerun the same command to resume" in err
    assert "Traceback" not in err
    assert stored(tmp_path) == []  # the interrupted run is not recorded as failed
    assert not list((tmp_path / "copy").glob(".*.tmp"))


# --- nonsense refused before anything trains (issue 24, case 4) ------------------------------

@pytest.mark.parametrize("args, words", [
    (["--seeds", "99999999999"], ["the suite has 99,999,999,999 runs", "give fewer --seeds"]),
    (["--train", "clip=inf"], ["bad train.clip 'inf'", "--train clip=1.0"]),
    (["--train", "clip=.nan"], ["bad train.clip nan", "finite"]),
    (["--train", "clip=-1"], ["bad train.clip -1"]),
    (["--train", "lr=.inf"], ["bad learning rate train.lr=inf"]),
    (["--train", "momentum=2"], ["bad train.momentum 2", "between 0 and 1"]),
    (["--workers", "1000"], ["--workers 1000 is more than the", "cores this process may use"]),
    (["--threads", "1000"], ["--threads 1000 is more than the"]),
    (["--launcher", "slurm", "--slurm", "cluster=local", "--slurm", "time=0"], ["bad SLURM setting time=0"]),
    (["--launcher", "slurm", "--slurm", "cluster=local", "--slurm", "cpus_per_task=1.5"],
     ["bad SLURM setting cpus_per_task=1.5", "whole number"]),
])
def test_nonsense_settings_are_refused_before_the_suite_is_listed(tmp_path, capsys, monkeypatch, args, words):
    def enumerated(*a, **k):
        raise AssertionError("the suite was enumerated before its settings were checked")

    monkeypatch.setattr("bench.suite.suites.resolve", enumerated)
    assert run_tiny(tmp_path, *args) == 2
    one_error_line(capsys, *words)
    assert stored(tmp_path) == []


# --- the exit status says how the sweep went (issue 24, case 3) ------------------------------

def test_a_sweep_with_a_failed_run_exits_non_zero_with_one_line(tmp_path, capsys, monkeypatch):
    from bench.sweep import training

    real = training.train_one

    def second_seed_crashes(config, *args, **kwargs):
        if config.seed == 1:
            raise RuntimeError("CUDA error: an illegal memory access")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(training, "train_one", second_seed_crashes)
    assert run_tiny(tmp_path, "--workers", "1") == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1].startswith("error: 1 of the 2 runs trained by this command failed"), err
    assert "rerun the same command" in err
    assert sorted(r["status"] for r in stored(tmp_path)) == ["failed", "ok"]
    monkeypatch.undo()
    assert run_tiny(tmp_path, "--workers", "1") == 0  # the retry succeeds: every run of the suite is stored ok
    capsys.readouterr()


# --- no trained run is dropped (issue 24, case 5) --------------------------------------------

def bad_line_lands_first(monkeypatch, line):
    """Appends `line` (a function of the record being stored) to the store just before the
    sweep stores its record, as a hand edit or another writer would."""
    real = ResultsStore.put

    def put(self, record):
        with open(self.path, "a") as f:
            f.write(line(record) + "\n")
        return real(self, record)

    monkeypatch.setattr(ResultsStore, "put", put)


def test_a_store_that_refuses_a_finished_run_mid_sweep_keeps_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CWBENCH_CACHE", str(tmp_path / "cache"))
    bad_line_lands_first(monkeypatch, lambda record: '{"run_id": "zzz", "status": "ok"}')
    assert run_tiny(tmp_path / "r", "--seeds", "1", "--workers", "1") == 2
    err = one_error_line(capsys, "line 1 is not a valid run record", "the finished run is kept in")
    record = json.loads(Path(re.search(r"kept in (\S+):", err).group(1)).read_text())
    assert record["status"] == "ok" and record["seed"] == 0


def test_a_finished_run_nowhere_to_keep_is_printed(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CWBENCH_CACHE", str(tmp_path / "file"))  # no folder can be made under a file
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "file"))
    bad_line_lands_first(monkeypatch, lambda record: '{"run_id": "zzz", "status": "ok"}')
    assert run_tiny(tmp_path / "r", "--seeds", "1", "--workers", "1") == 2
    printed, message = capsys.readouterr().err.strip().splitlines()
    assert json.loads(printed)["status"] == "ok"
    assert message.startswith("error: ") and "its record is the line printed above; append it to" in message


def test_a_record_that_loses_to_another_for_its_run_is_reported_with_both(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CWBENCH_CACHE", str(tmp_path / "cache"))
    other = {"recall_accuracy": 0.123, "ce": 2.0}
    bad_line_lands_first(monkeypatch, lambda record: json.dumps({**record, "metrics": other}))
    assert run_tiny(tmp_path, "--seeds", "1", "--workers", "1") == 0
    out = capsys.readouterr().out
    said = next(line for line in out.splitlines() if "not stored:" in line)
    assert "already has this run (ok, recall_accuracy=0.123" in said and "this sweep's record (ok" in said, out
    kept = json.loads(Path(re.search(r"kept in (\S+)$", said).group(1)).read_text())
    assert kept["metrics"] != other and f"recall_accuracy={kept['metrics']['recall_accuracy']}" in said
    assert [r["metrics"] for r in stored(tmp_path)] == [other]  # the store keeps the first
    assert "not stored: 1" in out


# --- messages name the file that is wrong (issue 24, case 6) ---------------------------------

def test_an_index_that_is_a_folder_is_named_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CWBENCH_CACHE", str(tmp_path / "cache"))
    index = tmp_path / "copy" / "runs.jsonl.index"
    index.mkdir(parents=True)
    assert run_tiny(tmp_path) == 2
    one_error_line(capsys, f"{index} is a folder", "the store's index", f"rm -r {index}")
    assert not (tmp_path / "cache").exists()  # refused before anything trained
