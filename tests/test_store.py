"""The results store: appends, torn lines, retries, corrupt lines, the index, claims."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.store.claims import LEASE_S
from bench.store.results import ResultsStore
from models.errors import UserInputError

REPO = Path(__file__).resolve().parent.parent

# another sweep: claims the run ids it is given, says which it got, then trains "forever"
SWEEP = """
import sys, time
from bench.store.results import ResultsStore
print(" ".join(ResultsStore(sys.argv[1]).claim(sys.argv[2:])), flush=True)
time.sleep(600)
"""


def record(rid, status="ok", **fields):
    """A minimal valid run record."""
    return {"run_id": rid, "status": status, "metrics": {"x": 1.0}, "task": "copy", "profile": "quick",
            "arch": "rnn", "model": {}, "train": {}, "task_params": {}, "budget": 100, "params": 100, "seed": 0,
            "primary_metric": "x", "higher_is_better": True, **fields}


def test_put_appends_and_a_retry_supersedes_a_failed_run(tmp_path):
    store = ResultsStore(tmp_path / "copy" / "runs.jsonl")
    store.put(record("a"))
    store.put(record("b", "failed"))
    store.put(record("b", "ok"))  # a retried run: its new line supersedes the failed one
    lines = store.path.read_text().splitlines()
    assert [(json.loads(line)["run_id"], json.loads(line)["status"]) for line in lines] == [
        ("a", "ok"), ("b", "failed"), ("b", "ok")]
    assert [(r["run_id"], r["status"]) for r in store.load()] == [("a", "ok"), ("b", "ok")]
    assert store.scan()[1] == []  # a superseded failed line is not a line left out
    assert store.finished_ids() == {"a", "b"}
    assert ResultsStore(store.path).finished_ids() == {"a", "b"}  # from the index, cold
    assert not list(store.path.parent.glob(".runs.*.tmp"))


def test_failed_runs_are_not_finished(tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.put(record("a", "failed"))
    store.put(record("b", "diverged"))
    assert store.finished_ids() == {"b"}


def test_corrupt_line_is_named_and_nothing_is_lost(tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.put(record("a"))
    with open(store.path, "a") as f:
        f.write('{"run_id": "b", "status": "o\n')  # a half-written line
    before = store.path.read_text()
    with pytest.raises(UserInputError, match=r"corrupt at line 2 .*repair or delete that line"):
        store.load()
    with pytest.raises(UserInputError):
        store.put(record("c"))
    assert store.path.read_text() == before


def test_a_line_without_run_id_is_rejected(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"status": "ok"}\n')
    with pytest.raises(UserInputError, match="line 1 is not a valid run record .*'run_id' is missing"):
        ResultsStore(path).load()


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.put(record("a"))
    before = store.path.read_text()
    real = os.write

    def half_then_disk_full(fd, data):
        real(fd, data[:len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("bench.store.results.os.write", half_then_disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.put(record("b"))
    monkeypatch.setattr("bench.store.results.os.write", lambda fd, data: real(fd, data[:10]))  # a short write
    with pytest.raises(OSError, match="wrote 10 of"):
        store.put(record("b"))
    monkeypatch.undo()
    assert store.path.read_text() == before
    assert not list(tmp_path.glob(".runs.*.tmp"))
    store.put(record("b"))
    assert ResultsStore(store.path).finished_ids() == {"a", "b"}


# --- appends: the cost of a write does not depend on the store's size ------------------------

def test_put_writes_one_line_and_reads_nothing_of_the_store(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "runs.jsonl")
    written = []
    real = os.write

    def counted(fd, data):
        written.append(len(data))
        return real(fd, data)

    def refuse(*args, **kwargs):
        raise AssertionError("put read the store")

    for size in (3, 3000):
        with open(store.path, "a") as f:  # a store grown elsewhere: the next look rebuilds the index
            f.writelines(json.dumps(record(f"old-{size}-{i}")) + "\n" for i in range(size))
        assert len(store.finished_ids()) >= size
        written.clear()
        with monkeypatch.context() as spy:
            spy.setattr("bench.store.results.os.write", counted)
            spy.setattr("bench.store.results.os.pread", refuse)
            spy.setattr(ResultsStore, "_read", refuse)
            spy.setattr(ResultsStore, "_rebuild_index", refuse)
            store.put(record(f"new-{size}"))
        line = json.dumps(record(f"new-{size}"), sort_keys=True) + "\n"
        entry = f'{store.path.stat().st_size} {store.path.stat().st_mtime_ns} ok "new-{size}"\n'
        assert written == [len(line), len(entry)]  # the record, then its index line: nothing else
        assert store.index_path.read_text().endswith(entry)
    assert ResultsStore(store.path).finished_ids() == store.finished_ids()


def test_a_finished_run_is_not_stored_again(tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    assert store.put(record("a"))
    before = store.path.read_text()
    # another sweep stored it first; the runner reports both records (tests/test_faults.py)
    assert ResultsStore(store.path).put(record("a", "failed")) is False
    assert store.path.read_text() == before


# --- torn last lines ---------------------------------------------------------------------

def test_a_torn_last_line_is_left_out_then_cut_off(tmp_path, capsys):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.put(record("a"))
    before = store.path.read_text()
    torn = json.dumps(record("b"))[:40]
    with open(store.path, "a") as f:
        f.write(torn)  # what a writer killed mid-append leaves: no newline
    assert [r["run_id"] for r in store.load()] == ["a"]  # a read leaves it out, and says so
    assert "last line (40 bytes) is torn" in capsys.readouterr().err
    assert store.path.read_text() == before + torn  # reading never writes
    store.check_writable()  # the next writer cuts it off, once, and says so
    assert f"dropped its last {len(torn)} bytes" in capsys.readouterr().err
    assert store.path.read_text() == before
    store.put(record("b"))
    assert store.finished_ids() == {"a", "b"}
    assert "dropped" not in capsys.readouterr().err


def test_a_whole_last_record_without_newline_is_kept(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(record("a")))  # written by hand, without the final newline
    store = ResultsStore(path)
    assert store.finished_ids() == {"a"}
    store.put(record("b"))
    assert [r["run_id"] for r in store.load()] == ["a", "b"]


def test_a_corrupt_line_in_the_middle_is_an_error_not_a_torn_line(tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.put(record("a"))
    with open(store.path, "a") as f:
        f.write('{"run_id": "b", "sta\n' + json.dumps(record("c")) + "\n")
    for read in (store.load, store.finished_ids, store.check_writable):
        with pytest.raises(UserInputError, match=r"corrupt at line 2 .*repair or delete that line"):
            read()


# --- the index: a cache of the store, rebuilt whenever it does not cover it -----------------

def test_the_index_follows_hand_edits_and_checkouts(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "runs.jsonl")
    for rid in "abc":
        store.put(record(rid))
    lines = store.path.read_text().splitlines(keepends=True)
    store.path.write_text(lines[0] + lines[2])  # a hand edit in place: b deleted
    assert store.finished_ids() == {"a", "c"}
    checkout = tmp_path / "checkout"
    checkout.write_text("".join(lines))
    os.replace(checkout, store.path)  # what git does: a new file under the old name
    assert store.finished_ids() == {"a", "b", "c"}
    store.path.write_text(lines[0] + lines[1].replace('"status": "ok"', '"status": "done"') + lines[2])
    with pytest.raises(UserInputError, match=r"line 2 is not a valid run record \(status 'done'"):
        store.finished_ids()  # a rebuild checks every line, like a full load
    store.path.write_text("".join(lines))
    assert store.finished_ids() == {"a", "b", "c"}
    rebuilt = []
    real = ResultsStore._rebuild_index
    monkeypatch.setattr(ResultsStore, "_rebuild_index", lambda self, fd: rebuilt.append(1) or real(self, fd))
    ResultsStore(store.path).check_writable()  # the index covers the store: no full read
    assert ResultsStore(store.path).finished_ids() == {"a", "b", "c"} and rebuilt == []
    store.index_path.write_text("not an index\n")  # a damaged index is only a missing cache
    assert ResultsStore(store.path).finished_ids() == {"a", "b", "c"} and rebuilt == [1]


def test_is_finished_reads_what_other_writers_added(tmp_path):
    path = tmp_path / "runs.jsonl"
    sweep, other = ResultsStore(path), ResultsStore(path)
    assert not sweep.is_finished("a")
    other.put(record("a"))
    assert sweep.is_finished("a")
    other.put(record("b", "failed"))
    assert not sweep.is_finished("b")


def test_any_run_id_survives_the_index(tmp_path):
    odd = ['with space', 'quote"and\\backslash', 'new\nline', 'été', '"']
    store = ResultsStore(tmp_path / "runs.jsonl")
    for rid in odd:
        store.put(record(rid))
    assert ResultsStore(store.path).finished_ids() == set(odd)


def test_compact_drops_superseded_lines_byte_for_byte(tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.put(record("a"))
    store.put(record("b", "failed"))
    store.put(record("b", "ok"))
    lines = store.path.read_text().splitlines(keepends=True)
    assert store.compact() == 1
    assert store.path.read_text() == lines[0] + lines[2]
    assert store.finished_ids() == {"a", "b"} and ResultsStore(store.path).finished_ids() == {"a", "b"}
    inode = store.path.stat().st_ino
    assert store.compact() == 0 and store.path.stat().st_ino == inode  # nothing to drop: untouched


# --- claims: two sweeps on one store never train the same run --------------------------------

@pytest.fixture
def other_sweep(tmp_path):
    """Starts a sweep process that claims the given run ids; returns (process, what it got)."""
    started = []

    def start(*run_ids):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen([sys.executable, "-c", SWEEP, str(tmp_path / "runs.jsonl"), *run_ids],
                                   stdout=subprocess.PIPE, text=True, env=env)
        started.append(process)
        return process, process.stdout.readline().split()

    yield start
    for process in started:
        process.kill()
        process.wait()
        process.stdout.close()


def test_a_sweep_cannot_claim_what_another_live_sweep_holds(tmp_path, other_sweep):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.put(record("done"))
    process, got = other_sweep("a", "b", "done")
    assert got == ["a", "b"]  # a finished run is nobody's to claim
    assert store.claim(["c", "b", "a", "done", "c"]) == ["c"]
    assert store.claimed_elsewhere(["a", "b", "c"]) == {r: f"pid {process.pid} on host {socket.gethostname()}"
                                                        for r in ("a", "b")}
    assert store.claim(["c"]) == ["c"]  # what this process holds it keeps
    store.release(["c"])
    assert store.claims.mine() == []


def test_a_killed_sweeps_claims_are_released(tmp_path, other_sweep):
    store = ResultsStore(tmp_path / "runs.jsonl")
    process, got = other_sweep("a", "b")
    assert got == ["a", "b"] and store.claim(["a", "b"]) == []
    process.kill()
    process.wait()
    assert store.claim(["b", "a"]) == ["b", "a"]
    assert sorted(p.name for p in store.claims.folder.iterdir()) == [store.claims.own_file().name]
    store.release_all()
    assert list(store.claims.folder.iterdir()) == []


def write_claim(store, host, pid, start, run_ids, age_s=0.0):
    store.claims.folder.mkdir(parents=True, exist_ok=True)
    path = store.claims.folder / f"{host}-{pid}.json"
    path.write_text(json.dumps({"host": host, "pid": pid, "start": start, "run_ids": run_ids}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_a_reused_pid_does_not_keep_a_dead_sweeps_claims(tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    # a live pid (our parent), but started at another time than the sweep that claimed
    path = write_claim(store, socket.gethostname(), os.getppid(), "another-boot/123", ["a"])
    assert store.claim(["a"]) == ["a"] and not path.exists()


@pytest.mark.parametrize("age_s, held", [(LEASE_S + 60, False), (60, True)])
def test_another_hosts_claims_hold_for_the_lease(tmp_path, age_s, held):
    store = ResultsStore(tmp_path / "runs.jsonl")
    path = write_claim(store, "elsewhere.example", 1, "x/1", ["a"], age_s)
    assert store.claim(["a", "b"]) == (["b"] if held else ["a", "b"])
    assert path.exists() == held
    assert store.claimed_elsewhere(["a"]) == ({"a": "pid 1 on host elsewhere.example"} if held else {})


def test_heartbeat_keeps_a_claim_fresh(tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.heartbeat()  # nothing claimed: nothing to touch
    store.claim(["a"])
    own = store.claims.own_file()
    os.utime(own, (0, 0))
    store.heartbeat()
    assert time.time() - own.stat().st_mtime < LEASE_S
