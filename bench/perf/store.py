"""`cwbench perf store` (`nox -s perf -- store`): what the results store costs as it grows.

For stores of N records the size of an audio run's (about 9 KB, most of it the learning
curve), measured in one run on one store grown from the smallest N to the largest:
- append: one put() (median of APPENDS), by a ResultsStore that has looked at the index
  before, as a sweep's has;
- finished ids: finished_ids() on a fresh ResultsStore, the index valid (read whole);
- index rebuild: the full checked read of every line that a store needs when its index
  does not cover it (edited by hand, checked out by git, grown by another program);
- old put: one atomic_write of the whole store, which is what every put did before the
  store appended (it also read and parsed every line first: the rebuild's time again).
The store is built in a temporary folder (about 0.9 GB at 100,000 records) and removed.
Results go to <out>/store_cpu.md and .csv (committed: results/speed/store_cpu.*).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench.perf.options import StoreOptions
from bench.perf.tables import header_lines
from bench.store.files import atomic_write
from bench.store.results import ResultsStore

SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (100, 1_000)
APPENDS = 50
CURVE_POINTS = 75  # a point is ~110 bytes: the curve is ~8 KB of the ~9 KB


def audio_record(run_id: str) -> dict:
    """A valid record shaped like an audio run's: its config, metrics and learning curve."""
    curve = [{"step": 100 * k, "train/loss": 0.15664921700954437 / k, "val/mse": 0.1566491723060608 / k,
              "val/nmse": 0.999932587146759 / k} for k in range(1, CURVE_POINTS + 1)]
    return {
        "run_id": run_id, "status": "ok", "task": "audio", "profile": "paper", "arch": "cwrnn/exponential",
        "model": {"arch": "cwrnn", "schedule": "exponential", "hidden": 41, "modules": 7, "offset": 0},
        "train": {"lr": 0.0003, "steps": 2000, "optimizer": "adam", "clip": 1.0, "loss_reduction": "mean"},
        "task_params": {"target": "builtin:0", "length": 320}, "budget": 1000, "params": 976, "seed": 3,
        "metrics": {"nmse": 0.0123456789, "mse": 0.00193456789}, "primary_metric": "nmse",
        "higher_is_better": False, "learned": True, "curve": curve, "wall_time_s": 123.456,
        "git_commit": "0" * 40, "date": "2026-01-01T00:00:00+00:00", "device": "cpu (x86_64, 2 threads)",
    }


def seconds(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def grow(path: Path, start: int, stop: int) -> None:
    """Records start..stop-1 written in bulk, as a sweep would have left them (which puts
    the index out of date: the next look rebuilds it)."""
    template = json.dumps(audio_record("@RUN@"), sort_keys=True) + "\n"
    with open(path, "a") as f:
        f.writelines(template.replace("@RUN@", f"{i:016x}") for i in range(start, stop))
        f.flush()
        os.fsync(f.fileno())  # or the first append's fsync would write all of it


def measure(folder: Path, sizes, log=print) -> list[dict]:
    path = Path(folder) / "runs.jsonl"
    stored = 0
    rows = []
    for size in sorted(sizes):
        grow(path, stored, size)
        stored = max(stored, size)
        rebuild = seconds(ResultsStore(path).finished_ids)
        cold = statistics.median(seconds(ResultsStore(path).finished_ids) for _ in range(5))
        store = ResultsStore(path)
        store.finished_ids()
        os.sync()  # what building and indexing left unwritten is flushed now, not by a timed fsync
        appends = []
        for _ in range(APPENDS):
            appends.append(seconds(store.put, audio_record(f"{stored:016x}")))
            stored += 1
        data = path.read_bytes()
        copy = path.with_name("rewritten.jsonl")
        rewrite = seconds(atomic_write, copy, data)
        copy.unlink()
        rows.append({"records": size, "store_mb": round(len(data) / 1e6, 1),
                     "append_ms": round(1e3 * statistics.median(appends), 3),
                     "append_max_ms": round(1e3 * max(appends), 3), "finished_ids_ms": round(1e3 * cold, 2),
                     "rebuild_s": round(rebuild, 3), "old_put_rewrite_s": round(rewrite, 3)})
        log(" ".join(f"{k}={v}" for k, v in rows[-1].items()))
    return rows


def markdown(rows: list[dict], header: dict, notes: list[str]) -> str:
    titles = {"records": "records", "store_mb": "store MB", "append_ms": f"append ms (median of {APPENDS})",
              "append_max_ms": "append ms (max)", "finished_ids_ms": "finished_ids ms (cold, index valid)",
              "rebuild_s": "index rebuild s (full read)", "old_put_rewrite_s": "old put: rewrite s"}
    lines = header_lines("Results store: cost by store size (cpu)", header)
    lines += ["", "| " + " | ".join(titles.values()) + " |", "|" + "---|" * len(titles)]
    lines += ["| " + " | ".join(str(row[key]) for key in titles) + " |" for row in rows]
    return "\n".join([*lines, "", *[f"- {note}" for note in notes], ""])


def run(options: StoreOptions) -> int:
    from bench.sweep import provenance

    sizes = options.sizes or (QUICK_SIZES if options.quick else SIZES)
    record_bytes = len(json.dumps(audio_record("0" * 16), sort_keys=True)) + 1
    print(f"store speed: {', '.join(map(str, sorted(sizes)))} records of {record_bytes} bytes", flush=True)
    with tempfile.TemporaryDirectory(prefix="cwbench-store-speed-") as folder:
        rows = measure(Path(folder), sizes)
    header = {
        "machine": f"{provenance.cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "stores built in": f"{tempfile.gettempdir()} (its file system's fsync is most of an append)",
        "date": provenance.now(),
        "commit": provenance.git_commit(),
        "command": options.command,
    }
    first, last = rows[0], rows[-1]
    ratio = last["append_ms"] / first["append_ms"]
    notes = [
        f"Records of {record_bytes} bytes, shaped like an audio run's ({CURVE_POINTS} learning-curve points); "
        "the store grows from the smallest size to the largest, each size's appends staying in it.",
        f"append at {last['records']:,} / append at {first['records']:,} records = {ratio:.2f} for a store "
        f"{last['records'] / first['records']:.0f}x larger: "
        + ("flat in the store's size" if ratio < 1.5 else "not flat on this file system") +
        " (an append is one write and one fsync of the store, and one write to its index; the store is never read).",
        "finished_ids: a fresh ResultsStore reading the whole index (one short line per record). Index "
        "rebuild: every line read and checked, as after a hand edit or a checkout; the old put did that "
        "too, before its rewrite.",
    ]
    options.out.mkdir(parents=True, exist_ok=True)
    stem = options.out / ("store_quick_cpu" if options.quick and not options.sizes else "store_cpu")
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=[*rows[0], "record_bytes", *header])
    writer.writeheader()
    writer.writerows({**row, "record_bytes": record_bytes, **header} for row in rows)
    atomic_write(stem.with_suffix(".csv"), table.getvalue())
    text = markdown(rows, header, notes)
    atomic_write(stem.with_suffix(".md"), text)
    print(text, flush=True)
    print(f"wrote {stem}.md, .csv", flush=True)
    return 0
