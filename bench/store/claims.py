"""Which runs each live sweep is training, so that two sweeps on one store never train the
same run twice.

Each claiming process keeps one small file in a folder beside the store
(runs.jsonl.claims/<host>-<pid>.json: host, pid, start, the run ids it claims), replaced
whole through bench/store/files.py and read and written only under the store's lock
(bench/store/results.py). A claim holds while its owner lives:
- on the same host, while its pid runs with the start it recorded (a reused pid, or a
  pid after a reboot, has another; where /proc is missing only the pid is checked);
- from another host (a shared file system, where its pid means nothing here), while its
  file was touched within LEASE_S: a sweep calls heartbeat() every HEARTBEAT_S or so.
Whoever sees a dead owner's file removes it, so a killed sweep's runs are free again.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import time
from pathlib import Path

from bench.store.files import atomic_write, remove_leftovers

LEASE_S = 15 * 60  # a claim from another host older than this is a dead sweep's
HEARTBEAT_S = 60  # how often a sweep should touch its claim: well inside the lease


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields from the third (state) on; None where it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()  # after the command name, which may hold spaces


def process_start(pid: int) -> str | None:
    """The boot and the clock tick a process started at (field 22 of /proc/<pid>/stat):
    the same pid reused later has another. None where /proc is missing."""
    fields = _proc_stat(pid)
    return f"{_boot_id()}/{fields[19]}" if fields else None


@functools.cache
def _identity(pid: int) -> dict:
    # by pid, so that a forked child is itself and not its parent
    return {"host": socket.gethostname(), "pid": pid, "start": process_start(pid)}


def me() -> dict:
    return _identity(os.getpid())


def alive(owner: dict, touched: float) -> bool:
    """Does the process that wrote a claim (touched: its file's mtime) still hold it?"""
    if owner["host"] != me()["host"]:
        return time.time() - touched < LEASE_S
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    fields = _proc_stat(owner["pid"])
    if fields is None:  # no /proc: the pid's liveness is all there is to go on
        return True
    zombie = fields[0] == "Z"  # killed, not yet reaped by its parent
    return not zombie and owner["start"] in (None, process_start(owner["pid"]))


def _parse(path: Path) -> dict | None:
    """A claim file's content; None for one that is not a claim (it claims nothing)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    shaped = (isinstance(data, dict) and isinstance(data.get("host"), str) and isinstance(data.get("pid"), int)
              and isinstance(data.get("run_ids"), list) and all(isinstance(r, str) for r in data["run_ids"]))
    return data if shaped else None


class Claims:
    """The claims beside one store. Call every method but heartbeat under the store's lock."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def own_file(self) -> Path:
        owner = me()
        return self.folder / f"{re.sub(r'[^A-Za-z0-9._-]', '_', owner['host'])}-{owner['pid']}.json"

    def mine(self) -> list[str]:
        data = _parse(self.own_file())
        # a file of this name left by an earlier process with this pid is not ours
        return data["run_ids"] if data and data.get("start") == me()["start"] else []

    def elsewhere(self) -> dict[str, str]:
        """Run id -> its owner in words, for the claims of other live processes. The files
        of dead owners are removed on the way."""
        taken = {}
        own = self.own_file()
        for path in self.folder.glob("*.json"):
            if path == own:
                continue
            data = _parse(path)
            try:
                touched = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if data is None or not alive(data, touched):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                remove_leftovers(path)  # a temporary file its owner was killed writing
                continue
            for run_id in data["run_ids"]:
                taken[run_id] = f"pid {data['pid']} on host {data['host']}"
        return taken

    def keep(self, run_ids: list[str]) -> None:
        """This process's claim is now exactly run_ids (none: no file)."""
        if not run_ids:
            self.drop_all()
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.own_file(), json.dumps({**me(), "run_ids": run_ids}) + "\n")

    def drop_all(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.own_file().unlink()

    def heartbeat(self) -> None:
        """One utime: this process's claim is fresh for another LEASE_S."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.own_file())
