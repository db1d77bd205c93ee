"""The results store: atomic writes, no duplicates, resume, corrupt lines."""

import json

import pytest

from bench.store import ResultsStore
from models.errors import UserInputError


def record(rid, status="ok", **fields):
    """A minimal valid run record."""
    return {"run_id": rid, "status": status, "metrics": {"x": 1.0}, "task": "copy", "profile": "quick",
            "arch": "rnn", "model": {}, "train": {}, "task_params": {}, "budget": 100, "params": 100, "seed": 0,
            "primary_metric": "x", "higher_is_better": True, **fields}


def test_put_appends_and_replaces_by_run_id(tmp_path):
    store = ResultsStore(tmp_path / "copy" / "runs.jsonl")
    store.put(record("a"))
    store.put(record("b", "failed"))
    store.put(record("b", "ok"))  # a retried run replaces its failed record
    lines = store.path.read_text().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["a", "b"]
    assert store.finished_ids() == {"a", "b"}
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

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr("bench.files.os.replace", crash)
    with pytest.raises(OSError):
        store.put(record("b"))
    assert store.path.read_text() == before
    assert not list(tmp_path.glob(".runs.*.tmp"))
