"""The results store: one JSON record per finished run in results/<task>/runs.jsonl.

The store is the record of the suite (wandb only mirrors it). Writing a record
rewrites the file through a temporary file and an atomic rename, under an exclusive
lock, so a sweep killed at any moment leaves either the old file or the new one,
never half a line; a record with the run id of an existing one replaces it, so a
run is never duplicated.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path

from models.errors import UserInputError


class ResultsStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> list[dict]:
        if not self.path.exists():
            return []
        records = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserInputError(
                    f"results store {self.path} is corrupt at line {number} ({err.msg}): "
                    "repair or delete that line (the other runs are untouched), then rerun"
                ) from None
            if not isinstance(record, dict) or "run_id" not in record:
                raise UserInputError(
                    f"results store {self.path} line {number} is not a run record (no run_id): "
                    "repair or delete that line (the other runs are untouched), then rerun"
                )
            records.append(record)
        return records

    def finished_ids(self) -> set[str]:
        """Runs that need no rerun: ok or diverged (failed runs are retried)."""
        return {r["run_id"] for r in self.load() if r.get("status") in ("ok", "diverged")}

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def put(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True, allow_nan=True)
        with self._locked():
            kept = [r for r in self.load() if r["run_id"] != record["run_id"]]
            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept) + line + "\n"
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".runs.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
