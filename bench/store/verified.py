"""Which external records `cwbench verify` reproduced here: results/<task>/verified.jsonl.

A record is external when it carries a non-empty `external` object: it was made by code
from outside this repository (an architecture plugin) or imported from a bundle made
elsewhere (bench/store/bundles.py). Its leaderboard row is marked external until a
`cwbench verify` here reproduces it. Each verify of a row with external records appends
one line beside the store: the row's run ids, the verdict, whether it reproduced, and the
commit, machine and date of the check. The latest line naming a run id decides: a later
verify that fails takes a row back to external.

The file is append-only (one line per write, O_APPEND, fsync) and written under the
store's lock (runs.jsonl.lock), so there is one writer at a time. It is committed beside
the store: a verification is part of the results.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from models.errors import UserInputError

VERIFIED = "verified.jsonl"
REPRODUCED = ("bitwise", "close", "consistent")  # the verdicts of bench/report/verify.py that pass


def is_external(external) -> bool:
    """Is a record's `external` field one that says the run was made outside this repository
    (a plugin's code, or another machine's sweep imported)?"""
    return isinstance(external, dict) and bool(external)


def verified_path(store_path: Path) -> Path:
    return Path(store_path).with_name(VERIFIED)


def append(store_path: Path, entries: list[dict]) -> None:
    """Appends one line per entry ({"run_ids": [...], "verdict": ..., "reproduced": bool,
    "commit", "machine", "date", ...}) beside the store, under the store's lock."""
    if not entries:
        return
    path = verified_path(store_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries).encode()
    with open(Path(store_path).with_name(Path(store_path).name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"wrote {written} of {len(data)} bytes to {path}")
            os.fsync(fd)
        finally:
            os.close(fd)


def reproduced_ids(store_path: Path) -> set[str]:
    """The run ids whose latest verification here reproduced them. A last line without its
    newline was torn by a killed writer: left out. Any other damaged line is an error."""
    path = verified_path(store_path)
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return set()
    except OSError as err:
        raise UserInputError(f"cannot read {path} ({err.strerror}): fix its permissions") from None
    latest: dict[str, bool] = {}
    for number, raw in enumerate(lines[:-1], start=1):  # lines[-1]: after the last newline
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
            run_ids, reproduced = entry["run_ids"], entry["reproduced"]
            if not (isinstance(run_ids, list) and all(isinstance(r, str) for r in run_ids)
                    and isinstance(reproduced, bool)):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise UserInputError(f"{path} line {number} is not a verification (an object with a list 'run_ids' and "
                                 "a true/false 'reproduced'): repair or delete that line, or run `cwbench verify` "
                                 "again") from None
        latest.update(dict.fromkeys(run_ids, reproduced))
    return {run_id for run_id, ok in latest.items() if ok}
