"""What a run record must hold to be stored, read back and counted in a leaderboard.

One check, used when the store is read and before a record is written: a record that
fails it is never aggregated (a metric of null or "0.99", a seed as a string, a run id
that is a list would otherwise turn into a wrong mean or a numpy traceback).
"""

from __future__ import annotations

import math

STATUSES = ("ok", "diverged", "failed")

# field -> (accepted types, what to say); bool is excluded from the numbers by hand below
FIELDS = {
    "run_id": (str, "a string"),
    "task": (str, "a string"),
    "profile": (str, "a string"),
    "arch": (str, "a string"),
    "model": (dict, "an object"),
    "train": (dict, "an object"),
    "task_params": (dict, "an object"),
    "metrics": (dict, "an object"),
    "budget": (int, "an integer"),
    "params": (int, "an integer"),
    "seed": (int, "an integer"),
    "primary_metric": (str, "a string"),
    "higher_is_better": (bool, "true or false"),
}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def problem(record) -> str | None:
    """The first thing wrong with a record, in words; None for a valid one."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("status") not in STATUSES:
        return f"status {record.get('status')!r} is not one of {', '.join(STATUSES)}"
    for name, (kind, words) in FIELDS.items():
        if name not in record:
            return f"field '{name}' is missing"
        value = record[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)) or (kind is str and not value):
            return f"field '{name}' is {value!r}, not {words}"
    for name, value in record["metrics"].items():
        if not _is_number(value) or (record["status"] == "ok" and not math.isfinite(value)):
            return f"metric '{name}' is {value!r}, not a finite number"
    if record["status"] == "ok" and record["primary_metric"] not in record["metrics"]:
        return f"status ok but the primary metric '{record['primary_metric']}' is missing"
    if record.get("learned") not in (True, False, None):
        return f"field 'learned' is {record['learned']!r}, not true, false or null"
    return None
