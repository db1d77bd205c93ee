"""Bundles: a sweep's run records carried from one results folder to another
(`cwbench export` and `cwbench import`), kept apart from what this repository reproduces.

A bundle is a .tar.gz of two files:
- runs.jsonl: the exported records, each line byte for byte as the source store holds it;
- manifest.json: the format, the task, what was selected, each record's run id and the
  sha256 of its line, the external code the records name (a plugin's name and hash), and
  the environment of the export (commit, machine, package versions, date).

Import checks everything before it writes anything: each line against its hash in the
manifest (a record changed after export is refused, by run id), each record as a store read
checks it (bench/store/records.py), and each run id against the config it claims (a record
whose config was edited no longer hashes to its id). Records whose run id the store already
holds are skipped and said, never replaced. The rest are appended through ResultsStore
(its lock, its one-line appends), each with an `external` object naming the bundle, so that
leaderboards mark them until `cwbench verify` reproduces them here (bench/store/verified.py).

The store layer: this module imports nothing from suite, sweep or report; the command line
hands it the run-id function (bench/suite/suites.py run_id) and the exporting environment.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.store.files import atomic_write
from bench.store.records import RunConfig, problem
from bench.store.results import ResultsStore
from bench.store.verified import is_external
from models.errors import UserInputError

FORMAT = "cwbench-bundle 1"
MANIFEST = "manifest.json"
RUNS = "runs.jsonl"
# what a run id is the hash of: the config the runner resolves (bench/suite/suites.py resolve)
TASK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a folder name under results/, never a path
SHOWN = 5  # run ids named in a line that counts skipped records


def line_sha256(line: bytes) -> str:
    """A stored line's hash, without its newline."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def stored_lines(store: ResultsStore, log=print) -> list[tuple[dict, bytes]]:
    """The store's counted records with their lines byte for byte, in store order: the last
    valid line of each run id, as a store read counts them (a failed run's retry supersedes it)."""
    _, left_out = store.scan()  # the store's own checks: a line that is not JSON is an error
    for line in left_out:
        log(f"warning: {store.path} line {line.line} left out of the bundle: {line.reason}")
    last: dict[str, tuple[int, dict, bytes]] = {}
    with open(store.path, "rb") as f:
        for number, raw in enumerate(f):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:  # only a last line torn by a killed writer: scan refused any other
                continue
            raw = raw if raw.endswith(b"\n") else raw + b"\n"  # a whole last record written by hand
            if problem(record) is None:
                last[record["run_id"]] = (number, record, raw)
    return [(record, raw) for _, record, raw in sorted(last.values(), key=lambda item: item[0])]


def external_code(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """The plugins ({plugin, source, sha256}) and earlier bundles ({imported_from, sha256})
    that the records' `external` objects name, each once."""
    plugins, bundles = {}, {}
    for record in records:
        external = record.get("external")
        while isinstance(external, dict) and external:
            if "plugin" in external:
                entry = {k: external.get(k) for k in ("plugin", "source", "sha256")}
                plugins[json.dumps(entry, sort_keys=True)] = entry
            if "imported_from" in external:
                entry = {k: external.get(k) for k in ("imported_from", "sha256")}
                bundles[json.dumps(entry, sort_keys=True)] = entry
            external = external.get("previous")
    return list(plugins.values()), list(bundles.values())


def _selected(pairs: list[tuple[dict, bytes]], field: str, wanted: list[str] | None, store: Path, flag: str):
    if not wanted:
        return pairs
    stored = sorted({record[field] for record, _ in pairs})
    missing = [w for w in wanted if w not in stored]
    if missing:
        raise UserInputError(f"no runs of {field} {missing[0]} in {store} (stored: {', '.join(stored)}): "
                             f"pass {flag} with stored names")
    return [(record, raw) for record, raw in pairs if record[field] in wanted]


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(mtime), 0o644
    tar.addfile(info, io.BytesIO(data))


def export_bundle(task: str, results_dir: Path, out: Path, environment: dict, archs: list[str] | None = None,
                  profile: str | None = None, log=print) -> dict:
    """Writes the bundle of task's stored records (of `archs` and `profile` where given) to
    `out`, atomically; returns its manifest."""
    store = ResultsStore(Path(results_dir) / task / "runs.jsonl")
    if not store.path.is_file():
        raise UserInputError(f"no results store {store.path}: run `cwbench run {task}` first, or pass the "
                             "--results DIR that holds it")
    out = Path(out)
    if not out.parent.is_dir():
        raise UserInputError(f"cannot write bundle {out}: folder {out.parent} does not exist; create it or pass "
                             "another -o")
    pairs = stored_lines(store, log)
    pairs = _selected(pairs, "profile", [profile] if profile else None, store.path, "--profile")
    pairs = _selected(pairs, "arch", archs, store.path, "--archs")
    if not pairs:
        raise UserInputError(f"no valid runs stored in {store.path}: nothing to export")
    records = [record for record, _ in pairs]
    plugins, bundles = external_code(records)
    manifest = {
        "format": FORMAT, "task": task, "profile": profile, "archs": archs, "exported_at": _now(),
        "environment": environment, "record_count": len(pairs), "plugins": plugins, "imported_bundles": bundles,
        "records": [{"run_id": record["run_id"], "sha256": line_sha256(raw)} for record, raw in pairs],
    }
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        _tar_member(tar, MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(), now)
        _tar_member(tar, RUNS, b"".join(raw for _, raw in pairs), now)
    try:
        atomic_write(out, buffer.getvalue())
    except OSError as err:
        raise UserInputError(f"cannot write bundle {out} ({err.strerror or err}): pass another -o") from None
    return manifest


@dataclass
class Bundle:
    """A bundle read and checked: its name, sha256, manifest and records (in bundle order)."""

    name: str
    sha256: str
    manifest: dict
    records: list[dict]

    @property
    def task(self) -> str:
        return self.manifest["task"]


def _members(path: Path, data: bytes) -> dict[str, bytes]:
    """The bundle's two files, read from the archive in memory (nothing is extracted to disk)."""
    not_a_bundle = (f"{path} is not a cwbench bundle (a .tar.gz holding {MANIFEST} and {RUNS}, written by "
                    "`cwbench export`)")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            found = {}
            for member in tar.getmembers():
                if member.name not in (MANIFEST, RUNS) or not member.isfile() or member.name in found:
                    raise UserInputError(f"{not_a_bundle}: it holds {member.name!r}; export it again")
                found[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UserInputError(f"{not_a_bundle}: {err}") from None
    missing = [name for name in (MANIFEST, RUNS) if name not in found]
    if missing:
        raise UserInputError(f"{not_a_bundle}: {missing[0]} is missing; export it again")
    return found


def _manifest(path: Path, raw: bytes) -> dict:
    try:
        manifest = json.loads(raw)
    except ValueError as err:
        raise UserInputError(f"bundle {path}: {MANIFEST} is not JSON ({err}): export it again") from None
    entries = manifest.get("records") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserInputError(f"bundle {path}: {MANIFEST} is not a {FORMAT!r} manifest: export it again with this "
                             "version of cwbench")
    if not isinstance(manifest.get("task"), str) or not TASK_NAME.fullmatch(manifest["task"]):
        raise UserInputError(f"bundle {path}: its manifest's task {manifest.get('task')!r} is not a task name: "
                             "export it again")
    if not isinstance(manifest.get("environment", {}), dict):
        raise UserInputError(f"bundle {path}: its manifest's environment is not an object: export it again")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("run_id"), str)
                                                and isinstance(e.get("sha256"), str) for e in entries):
        raise UserInputError(f"bundle {path}: its manifest's records are not a list of {{run_id, sha256}}: "
                             "export it again")
    return manifest


def read_bundle(path: Path) -> Bundle:
    """The bundle at `path`, every record checked (see the module); the first problem is one
    UserInputError naming the record by its run id, and nothing is imported."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserInputError(f"cannot read bundle {path} ({err.strerror or err}): give the path of a bundle "
                             "written by `cwbench export`") from None
    files = _members(path, data)
    manifest = _manifest(path, files[MANIFEST])
    lines = files[RUNS].split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # after the last newline
    entries = manifest["records"]
    if len(lines) != len(entries):
        raise UserInputError(f"bundle {path} holds {len(lines)} records but its manifest lists {len(entries)}: "
                             "records were added or removed after export; export it again")
    again = "export it again from the results that hold the run"
    records, seen = [], set()
    for number, (raw, entry) in enumerate(zip(lines, entries), start=1):
        named = f"bundle {path}: record {entry['run_id']} ({RUNS} line {number})"
        if line_sha256(raw) != entry["sha256"]:
            raise UserInputError(f"{named} is not the record that was exported (its sha256 differs from the "
                                 f"manifest's: changed after export): {again}, or leave it out (--archs)")
        try:
            record = json.loads(raw)
        except ValueError:
            raise UserInputError(f"{named} is not JSON: {again}") from None
        wrong = problem(record)
        if wrong:
            raise UserInputError(f"{named} is not a valid run record ({wrong}): {again}")
        if record["run_id"] != entry["run_id"]:
            raise UserInputError(f"{named} holds run {record['run_id']}, not the manifest's: {again}")
        if record["task"] != manifest["task"]:
            raise UserInputError(f"{named} is a run of task {record['task']}, not of the bundle's task "
                                 f"{manifest['task']}: export each task on its own")
        try:
            computed = RunConfig.from_dict(record).run_id
        except (KeyError, TypeError, ValueError) as err:
            raise UserInputError(f"{named} has no complete config ({err}): {again}") from None
        if computed != record["run_id"]:
            raise UserInputError(f"{named}: its run id does not match its config (which hashes to {computed}): "
                                 f"the record was edited after its run; {again}")
        if record["run_id"] in seen:
            raise UserInputError(f"{named} is in the bundle twice: {again}")
        seen.add(record["run_id"])
        records.append(record)
    return Bundle(path.name, hashlib.sha256(data).hexdigest(), manifest, records)


def import_bundle(bundle: Bundle, results_dir: Path, log=print) -> dict[str, int]:
    """Appends the bundle's records that results_dir/<task>/runs.jsonl has not got, each marked
    external (the bundle's name and sha256, the export's commit and date, and the record's own
    `external` before it as `previous`); returns {"added": n, "skipped": m}."""
    store = ResultsStore(Path(results_dir) / bundle.task / "runs.jsonl")
    store.check_writable()
    present = {record["run_id"] for record in store.load()}  # whatever its status: never replaced
    skipped = [r["run_id"] for r in bundle.records if r["run_id"] in present]
    added = 0
    imported_at = _now()
    for record in bundle.records:
        if record["run_id"] in present:
            continue
        external = {"imported_from": bundle.name, "sha256": bundle.sha256, "imported_at": imported_at,
                    "exported_at": bundle.manifest.get("exported_at"),
                    "exported_commit": (bundle.manifest.get("environment") or {}).get("commit")}
        if is_external(record.get("external")):
            external["previous"] = record["external"]
        if store.put({**record, "external": external}):
            added += 1
        else:  # stored meanwhile by a sweep on this store
            skipped.append(record["run_id"])
    if skipped:
        log(f"skipped {len(skipped)} of {len(bundle.records)} records: their run ids are already in {store.path} "
            "(never replaced): " + ", ".join(skipped[:SHOWN]) + (" ..." if len(skipped) > SHOWN else ""))
    log(f"imported {added} records of task {bundle.task} from {bundle.name} into {store.path}"
        + (f", marked external until `cwbench verify {bundle.task}` reproduces them here" if added else ""))
    return {"added": added, "skipped": len(skipped)}
