"""The results store: one JSON record per finished run in results/<task>/runs.jsonl.

The store is the record of the suite (wandb only mirrors it). Writing a record appends one
line, with a single write on an O_APPEND descriptor and an fsync, under an exclusive lock:
it costs the same at ten records as at a hundred thousand, and a committed store changes
by added lines. A writer killed mid-append leaves a last line without its newline; that
line was never stored (its put had not returned), so reads leave it out and the next
writer cuts it off, saying so. A failed run is retried by a later sweep and its new line
supersedes the failed one; any other repeated run id is an error. Every line is checked
when read in full (bench/store/records.py): a line that is not valid JSON or not a valid run
record is named by its number.

Beside the store, all ignored by git:
- runs.jsonl.lock, the lock every writer takes;
- runs.jsonl.index, one short line per stored line (the store's size and mtime once it
  was written, its status and run id), appended after each record. It is a cache: it
  counts only while it covers the store exactly (same inode, size and mtime), else it is
  rebuilt from a full, checked read, so a store edited by hand or checked out by git is
  checked again. What is finished is read from it, and only its new lines after the
  first look (a few MB at 100,000 runs);
- runs.jsonl.claims/, the runs each live sweep is training (bench/store/claims.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.store.claims import Claims
from bench.store.files import atomic_write, remove_leftovers
from bench.store.records import STATUSES, problem
from models.errors import UserInputError

MIN_FREE_BYTES = 16 << 20  # room for a store compaction and a leaderboard with its plots
FINISHED = ("ok", "diverged")  # need no rerun; failed runs are retried
INDEX_HEADER = "cwbench-index 1"
NO_RUN = "-"  # the status of an index line that only says how far the index covers the store

_warned: set[tuple] = set()


def warn_once(key: tuple, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print(f"warning: {message}", file=sys.stderr)


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


def append_line(fd: int, line: bytes) -> None:
    """One write (on an O_APPEND descriptor: at the end, whatever else wrote there), then
    fsync. A short write is an error: the caller cuts back what it left."""
    written = os.write(fd, line)
    if written != len(line):
        raise OSError(f"wrote {written} of {len(line)} bytes")
    os.fsync(fd)


def last_line_start(fd: int, size: int) -> int:
    """Where the store's unterminated last line starts (size where it ends with a newline)."""
    end = size
    while end > 0:
        start = max(0, end - (1 << 16))
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


class ResultsStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.index_path = self.path.with_name(self.path.name + ".index")
        self.claims = Claims(self.path.with_name(self.path.name + ".claims"))
        # runs in training keep their progress here (bench/sweep/checkpoints.py), one file a run
        self.checkpoints = self.path.with_name(self.path.name + ".checkpoints")
        self._forget()

    def _forget(self) -> None:
        """Drops what this object read of the index: the next look reads it from its start."""
        self._index_file = None  # (device, inode) of the index file read so far
        self._index_read = 0  # bytes of it read
        self._store_inode = None  # of the store the index describes
        self._covered = None  # (size, mtime_ns) of the store the index covers
        self._finished: set[str] = set()

    @staticmethod
    def _fix() -> str:
        return "repair or delete that line (the other runs are untouched), then rerun"

    def _refuse_a_folder(self) -> None:
        if self.path.is_dir():
            raise UserInputError(f"results store {self.path} is a folder, not a file: move it away "
                                 "or pass another --results DIR")

    def _refusal(self, first: LeftOut) -> UserInputError:
        return UserInputError(f"results store {self.path} line {first.line} is not a valid run record "
                              f"({first.reason}): " + self._fix())

    # --- full reads: every line checked --------------------------------------------------

    def _read(self, keep: bool):
        """Every line of the store, checked: (the counted records if keep, the lines left out,
        (line, start, end, status, run id) of each valid record line). A line that is not JSON
        at all is an error: the file is damaged, not just odd; except an unterminated last
        line, which is what a writer killed mid-append leaves and was never stored."""
        self._refuse_a_folder()
        counted: dict[str, tuple[int, str, dict | None]] = {}  # run id -> (line, status, record)
        left_out, lines = [], []
        end = 0
        try:
            with open(self.path, "rb") as f:
                for number, raw in enumerate(f, start=1):
                    start, end = end, end + len(raw)
                    if not raw.strip():
                        continue
                    try:
                        record = json.loads(raw)
                    except ValueError as err:  # not JSON, or not UTF-8
                        if not raw.endswith(b"\n"):
                            warn_once((str(self.path), start), f"{self.path}: its last line ({len(raw)} bytes) "
                                      "is torn, left by a writer killed mid-append: not a stored run, left out")
                            break
                        raise UserInputError(f"results store {self.path} is corrupt at line {number} "
                                             f"({getattr(err, 'msg', 'not UTF-8 text')}): " + self._fix()) from None
                    wrong = problem(record)
                    if wrong:
                        left_out.append(LeftOut(number, wrong))
                        continue
                    run_id, status = record["run_id"], record["status"]
                    earlier = counted.get(run_id)
                    if earlier and earlier[1] != "failed":  # a failed run's retry supersedes it
                        left_out.append(LeftOut(earlier[0], f"run_id {run_id} again at line {number}, "
                                                            "which is counted"))
                    counted[run_id] = (number, status, record if keep else None)
                    lines.append((number, start, end, status, run_id))
        except FileNotFoundError:
            return [], [], []
        except OSError as err:
            raise UserInputError(f"cannot read results store {self.path} ({err.strerror}): fix its permissions "
                                 "or pass another --results DIR") from None
        records = [record for _, _, record in sorted(counted.values(), key=lambda item: item[0])]
        return records, sorted(left_out, key=lambda x: x.line), lines

    def scan(self) -> tuple[list[dict], list[LeftOut]]:
        """The valid records (the last of several with one run id) and the lines left out."""
        records, left_out, _ = self._read(keep=True)
        return records, left_out

    def load(self) -> list[dict]:
        """Every record, or an error naming the first line that is not a valid record: the
        runner neither trains on nor writes to a store it does not understand."""
        records, left_out = self.scan()
        if left_out:
            raise self._refusal(left_out[0])
        return records

    # --- the index ---------------------------------------------------------------------------

    def _read_index(self) -> bool:
        """Reads the index lines added since the last look; False where the index is missing
        or damaged (then it is rebuilt)."""
        try:
            with open(self.index_path, "rb") as f:
                stat = os.fstat(f.fileno())
                if (stat.st_dev, stat.st_ino) != self._index_file or stat.st_size < self._index_read:
                    self._forget()  # replaced (rebuilt or compacted elsewhere): read it all again
                    self._index_file = (stat.st_dev, stat.st_ino)
                f.seek(self._index_read)
                new = f.read()
        except FileNotFoundError:
            return False
        if not new:
            return self._store_inode is not None  # nothing new since a look that read the header
        if not new.endswith(b"\n"):
            return False  # under the lock nobody is mid-write: a torn index
        try:
            lines = new.decode().split("\n")[:-1]
            if self._index_read == 0:
                header, inode = lines.pop(0).rsplit(" ", 1)
                if header != INDEX_HEADER:
                    return False
                self._store_inode = int(inode)
            for line in lines:
                _, _, status, quoted = line.split(" ", 3)
                if status == NO_RUN:
                    continue
                if status not in STATUSES or quoted[:1] != '"' or quoted[-1:] != '"':
                    return False
                run_id = json.loads(quoted) if "\\" in quoted else quoted[1:-1]  # a slice: 4x faster
                if status in FINISHED:
                    self._finished.add(run_id)
                else:
                    self._finished.discard(run_id)
            if lines:
                size, mtime, _ = lines[-1].split(" ", 2)
                self._covered = (int(size), int(mtime))
        except ValueError:  # not UTF-8, too few fields, not numbers, not a JSON string
            return False
        self._index_read += len(new)
        return True

    def _rebuild_index(self, fd: int) -> None:
        """The index again, from a full checked read of the store (which must be valid)."""
        self._forget()
        self._cut_torn_line(fd)
        stat = os.fstat(fd)
        _, left_out, lines = self._read(keep=False)
        if left_out:
            raise self._refusal(left_out[0])
        text = [f"{INDEX_HEADER} {stat.st_ino}\n"]
        text += [f"{end} 0 {status} {json.dumps(run_id)}\n" for _, _, end, status, run_id in lines]
        text.append(f"{stat.st_size} {stat.st_mtime_ns} {NO_RUN} {NO_RUN}\n")
        atomic_write(self.index_path, "".join(text))
        self._read_index()

    def _cut_torn_line(self, fd: int) -> None:
        """An unterminated last line: cut off where it is not JSON (a writer was killed
        mid-append: put had not returned, so it was never stored), else given its newline."""
        size = os.fstat(fd).st_size
        start = last_line_start(fd, size)
        if start == size:
            return
        try:
            json.loads(os.pread(fd, size - start, start))
        except ValueError:
            os.truncate(self.path, start)
            warn_once((str(self.path), "cut", start), f"{self.path}: dropped its last {size - start} bytes, "
                      "a line torn by a writer killed mid-append (never a stored run)")
            return
        with open(self.path, "ab") as f:  # a whole record written without a newline (by hand)
            f.write(b"\n")

    def _look(self, fd: int | None) -> None:
        """Under the lock: brings this object up to date with the store (fd: open on it; None:
        there is no store), from the index's new lines where it covers the store exactly,
        else from a full read that rebuilds it."""
        if fd is None:
            self._forget()
            return
        stat = os.fstat(fd)
        current = (self._read_index() and self._store_inode == stat.st_ino
                   and self._covered == (stat.st_size, stat.st_mtime_ns))
        if not current:
            self._rebuild_index(fd)

    def _add_to_index(self, stat: os.stat_result, status: str, run_id: str) -> None:
        line = f"{stat.st_size} {stat.st_mtime_ns} {status} {json.dumps(run_id)}\n".encode()
        try:
            fd = os.open(self.index_path, os.O_WRONLY | os.O_APPEND)
            try:
                if os.write(fd, line) != len(line):
                    raise OSError("short write")
            finally:
                os.close(fd)
        except OSError:  # the record is stored; the index is only a cache, rebuilt at the next look
            with contextlib.suppress(OSError):
                self.index_path.unlink()
            self._forget()
            return
        self._index_read += len(line)
        self._covered = (stat.st_size, stat.st_mtime_ns)
        (self._finished.add if status in FINISHED else self._finished.discard)(run_id)

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @contextlib.contextmanager
    def _looked(self):
        """Under the lock, this object up to date with the store."""
        with self._locked():
            self._refuse_a_folder()
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                fd = None
            try:
                self._look(fd)
                yield
            finally:
                if fd is not None:
                    os.close(fd)

    # --- what the runner asks ------------------------------------------------------------

    def finished_ids(self) -> set[str]:
        """Runs that need no rerun: ok or diverged (failed runs are retried)."""
        with self._looked():
            return set(self._finished)

    def is_finished(self, run_id: str) -> bool:
        """Reads only what was stored since this object last looked."""
        with self._looked():
            return run_id in self._finished

    def check_writable(self) -> None:
        """Before anything trains: the folder exists (or can be made), is a folder, can be
        written, and has room; the store itself is a readable, valid file (read in full
        only where the index does not cover it)."""
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
        self._refuse_odd_companions()
        try:
            with self._looked():
                # of a writer killed mid-write; under the lock none is mid-write
                remove_leftovers(self.path)  # the index's too: .runs.jsonl.index.*.tmp
                if self.path.exists() and not os.access(self.path, os.W_OK):
                    raise PermissionError(13, "Permission denied", str(self.path))
        except OSError as err:
            wrong = err.filename or self.path  # the store, or a file beside it
            raise UserInputError(f"cannot use {wrong} ({err.strerror or err}), a file of results store {self.path}: "
                                 "fix its permissions or pass another --results DIR") from None

    def _refuse_odd_companions(self) -> None:
        """The files beside the store are the store's own: one of the wrong kind (a folder
        where the index should be, e.g.) is named with the fix."""
        lock = self.path.with_name(self.path.name + ".lock")
        for path, what, fix in ((self.index_path, "the store's index", "it is a cache, rebuilt from the store"),
                                (lock, "the store's lock file", "it is made again, empty")):
            if path.is_dir():
                raise UserInputError(f"{path} is a folder, but it must be {what}, a file: move it away or remove it "
                                     f"(`rm -r {path}`; {fix}), then rerun")
        for folder, what in ((self.claims.folder, "the sweeps' claims"), (self.checkpoints, "the runs' checkpoints")):
            if folder.exists() and not folder.is_dir():
                raise UserInputError(f"{folder} is a file, but it must be the folder of {what}: remove it "
                                     f"(`rm {folder}`; it is made again), then rerun")

    def put(self, record: dict) -> bool:
        """Appends the record and returns once it is on disk. Returns False, writing nothing,
        where the run is already finished in the store (another sweep stored it first)."""
        wrong = problem(record)
        if wrong:
            raise ValueError(f"refusing to store an invalid run record ({wrong}): {record.get('run_id')}")
        line = (json.dumps(record, sort_keys=True, allow_nan=True) + "\n").encode()
        with self._locked():
            self._refuse_a_folder()
            new = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)  # the umask applies
            try:
                self._look(fd)
                if record["run_id"] in self._finished:  # the caller says so, with both records' metrics
                    return False
                before = os.fstat(fd).st_size
                try:
                    append_line(fd, line)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, before)  # part of a line is not a record
                    raise
                stat = os.fstat(fd)
            finally:
                os.close(fd)
            if new:  # the new file's name must survive a crash too
                folder = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
            self._add_to_index(stat, record["status"], record["run_id"])
        return True

    def compact(self) -> int:
        """Rewrites the store without the failed lines that later ones supersede (and blank
        lines), copying every kept line byte for byte; returns how many lines went. Through a
        temporary file and a rename: a reader sees the old store or the new one."""
        with self._locked():
            _, left_out, lines = self._read(keep=False)
            if left_out:
                raise self._refusal(left_out[0])
            last = {run_id: number for number, _, _, _, run_id in lines}
            kept = [(start, end) for number, start, end, _, run_id in lines if last[run_id] == number]
            data = self.path.read_bytes() if self.path.exists() else b""
            if sum(end - start for start, end in kept) == len(data):
                return 0
            atomic_write(self.path, b"".join(data[start:end] for start, end in kept))
            fd = os.open(self.path, os.O_RDONLY)
            try:
                self._rebuild_index(fd)
            finally:
                os.close(fd)
        return len(lines) - len(kept)

    # --- checkpoints: a run killed mid-training goes on from its last one -------------------

    def checkpoint_path(self, run_id: str) -> Path:
        return self.checkpoints / f"{run_id}.ckpt"

    def drop_checkpoints(self, run_ids: Iterable[str]) -> None:
        """Removes the checkpoints of these runs (stored: nothing will train them again)."""
        for run_id in run_ids:
            self.checkpoint_path(run_id).unlink(missing_ok=True)

    # --- claims: two sweeps on one store never train the same run --------------------------

    def claim(self, run_ids: Iterable[str]) -> list[str]:
        """The ids (in the given order) this process now owns: not finished, and not claimed
        by another live sweep. They stay claimed until released or this process dies."""
        wanted = list(dict.fromkeys(run_ids))
        with self._looked():
            taken = self.claims.elsewhere()
            owned = [r for r in wanted if r not in self._finished and r not in taken]
            self.claims.keep(list(dict.fromkeys([*self.claims.mine(), *owned])))
        return owned

    def release(self, run_ids: Iterable[str]) -> None:
        """Gives runs up (stored, or abandoned): another sweep may take what is not stored."""
        dropped = set(run_ids)
        with self._locked():
            self.claims.keep([r for r in self.claims.mine() if r not in dropped])

    def release_all(self) -> None:
        """At the end of a sweep, interrupted or not."""
        with self._locked():
            self.claims.drop_all()

    def heartbeat(self) -> None:
        """Keeps this process's claims alive for other hosts (one utime; no lock)."""
        self.claims.heartbeat()

    def claimed_elsewhere(self, run_ids: Iterable[str]) -> dict[str, str]:
        """Of run_ids, those another live sweep holds -> which, e.g. "pid 123 on host x"."""
        with self._locked():
            taken = self.claims.elsewhere()
        return {r: taken[r] for r in run_ids if r in taken}
