"""What the timing tools write around their rows: the opening of every tool's .md (title and
header lines), and for the CPU tools that train (interference.py, overhead.py) their header of
provenance lines, a column of every .csv row, and the .csv/.md pair itself. The tables'
contents and the rest of their markdown are each tool's own.

Called at the end of a tool's run, after its pin_threads: torch (through provenance) and
pandas load here only then.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.store.files import atomic_write


def cpu_header(command: str, elapsed: float, without: tuple[str, ...] = ()) -> dict:
    """The provenance of a CPU timing table: this machine (less the keys in `without`: those
    each row states itself), cores, versions, date, commit, the command, its wall time and the
    load average at the end (what else was running)."""
    from bench.sweep import provenance

    return {
        "machine": json.dumps({k: v for k, v in provenance.machine("cpu").items() if k not in without},
                              sort_keys=True),
        "cpu cores": os.cpu_count(),
        "versions": ", ".join(f"{k} {v}" for k, v in provenance.versions().items()),
        "date": provenance.now(),
        "commit": provenance.git_commit(),
        "command": command,
        "wall time": f"{elapsed:.0f} s",
        "load average at the end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def header_lines(title: str, header: dict) -> list[str]:
    """The opening of a table's markdown: its title, then a line per header entry."""
    return [f"# {title}", "", *(f"- {key}: {value}" for key, value in header.items())]


def write_tables(stem: Path, rows: list[dict], header: dict, text: str) -> None:
    """stem.csv: a line per row, every header entry a column of it (as text); stem.md: `text`."""
    import pandas as pd

    df = pd.DataFrame([dict(r, **{k: str(v) for k, v in header.items()}) for r in rows])
    atomic_write(stem.with_suffix(".csv"), df.to_csv(index=False))
    atomic_write(stem.with_suffix(".md"), text)
