"""The results store: one JSON record per finished run in results/<task>/runs.jsonl.

The store is the record of the suite (wandb only mirrors it). Writing a record
rewrites the file through a temporary file and an atomic rename (bench/files.py), under
an exclusive lock, so a sweep killed at any moment leaves either the old file or the new
one, never half a line; a record with the run id of an existing one replaces it, so a
run is never duplicated. Every line is checked when read (bench/records.py): a line
that is not valid JSON or not a valid run record is named by its number.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.files import atomic_write, remove_leftovers
from bench.records import problem
from models.errors import UserInputError

MIN_FREE_BYTES = 16 << 20  # room for a store rewrite and a leaderboard with its plots


@dataclass(frozen=True)
class LeftOut:
    """A stored line the leaderboard does not count, and why."""

    line: int
    reason: str


def probe_write(folder: Path) -> None:
    """Write and remove a file in `folder`: the only test of writability that holds for
    every user (root passes any permission check) and every file system (read-only mounts)."""
    with tempfile.TemporaryFile(dir=folder):
        pass


class ResultsStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    @staticmethod
    def _fix() -> str:
        return "repair or delete that line (the other runs are untouched), then rerun"

    def scan(self) -> tuple[list[dict], list[LeftOut]]:
        """The valid records (the last of several with one run id) and the lines left out.
        A line that is not JSON at all is an error: the file is damaged, not just odd."""
        if self.path.is_dir():
            raise UserInputError(f"results store {self.path} is a folder, not a file: move it away "
                                 "or pass another --results DIR")
        if not self.path.exists():
            return [], []
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise UserInputError(f"cannot read results store {self.path} ({err}): fix its permissions "
                                 "or pass another --results DIR") from None
        by_id: dict[str, tuple[int, dict]] = {}
        left_out = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserInputError(f"results store {self.path} is corrupt at line {number} ({err.msg}): "
                                     + self._fix()) from None
            wrong = problem(record)
            if wrong:
                left_out.append(LeftOut(number, wrong))
                continue
            if record["run_id"] in by_id:
                earlier = by_id[record["run_id"]][0]
                left_out.append(LeftOut(earlier, f"run_id {record['run_id']} again at line {number}, "
                                                 "which is counted"))
            by_id[record["run_id"]] = (number, record)
        kept = sorted(by_id.values(), key=lambda item: item[0])
        return [record for _, record in kept], sorted(left_out, key=lambda x: x.line)

    def load(self) -> list[dict]:
        """Every record, or an error naming the first line that is not a valid record: the
        runner neither trains on nor rewrites a store it does not understand."""
        records, left_out = self.scan()
        if left_out:
            first = left_out[0]
            raise UserInputError(f"results store {self.path} line {first.line} is not a valid run record "
                                 f"({first.reason}): " + self._fix())
        return records

    def finished_ids(self) -> set[str]:
        """Runs that need no rerun: ok or diverged (failed runs are retried)."""
        return {r["run_id"] for r in self.load() if r["status"] in ("ok", "diverged")}

    def check_writable(self) -> None:
        """Before anything trains: the folder exists (or can be made), is a folder, can be
        written, and has room; the store itself is a readable, valid file."""
        folder = self.path.parent
        for parent in (folder, *folder.parents):
            if parent.exists() and not parent.is_dir():
                raise UserInputError(f"results folder {folder}: {parent} is a file, not a folder: "
                                     "pass another --results DIR")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserInputError(f"cannot create results folder {folder} ({err.strerror}): "
                                 "pass another --results DIR") from None
        try:
            probe_write(folder)
        except OSError as err:
            raise UserInputError(f"results folder {folder} is not writable ({err.strerror}): fix its permissions "
                                 "or pass another --results DIR") from None
        free = shutil.disk_usage(folder).free
        if free < MIN_FREE_BYTES:
            raise UserInputError(f"no room in results folder {folder} ({free >> 20} MB free, "
                                 f"{MIN_FREE_BYTES >> 20} MB needed): free some space or pass another --results DIR")
        with self._locked():
            remove_leftovers(self.path)  # of a writer killed mid-write; under the lock none is mid-write
        self.load()

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def put(self, record: dict) -> None:
        wrong = problem(record)
        if wrong:
            raise ValueError(f"refusing to store an invalid run record ({wrong}): {record.get('run_id')}")
        line = json.dumps(record, sort_keys=True, allow_nan=True)
        with self._locked():
            kept = [r for r in self.load() if r["run_id"] != record["run_id"]]
            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept) + line + "\n"
            atomic_write(self.path, text)

