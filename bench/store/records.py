"""What a run is and what its record holds: `RunConfig` (the resolved config whose hash,
seed included, is the run id), `RunRecord` (a stored run: its config, what happened, where
and with what), and `problem`, the one check a record passes before it is stored, read back
or counted in a leaderboard (a metric of null or "0.99", a seed as a string, a run id that
is a list would otherwise turn into a wrong mean or a numpy traceback).

A record's JSON keeps exactly the keys it was written with: `RunRecord.from_dict(d).to_dict()
== d` for every record ever stored (tested on the committed stores), so run ids and the
committed files never change when a field is added here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

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


# the config's keys in the order the suite has always built them (the order the hash ignores)
CONFIG_KEYS = ("task", "profile", "task_params", "arch", "model", "budget", "params", "train", "seed")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's numbers besides the machine: task and its parameters,
    architecture and its resolved shape, budget and matched size, training settings, seed."""

    task: str
    profile: str
    task_params: dict
    arch: str
    model: dict
    budget: int
    params: int
    train: dict
    seed: int
    tuning: bool = False  # a tuning run (scored on validation data): part of the id, absent when False
    plugin: str = ""  # the plugin that provides the architecture (models/plugins.py): absent for a built-in
    trial: dict = dataclasses.field(default_factory=dict)  # a search trial's {"study", "number"}: absent otherwise

    __hash__ = None  # its dicts are not hashable: key runs by run_id

    def to_dict(self) -> dict:
        return ({key: getattr(self, key) for key in CONFIG_KEYS} | ({"tuning": True} if self.tuning else {})
                | ({"plugin": self.plugin} if self.plugin else {}) | ({"trial": self.trial} if self.trial else {}))

    @property
    def run_id(self) -> str:
        """A hash of the fully resolved config, seed included."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The config of a config dict or of a stored record (its other keys are ignored)."""
        return cls(**{key: d[key] for key in CONFIG_KEYS}, tuning=d.get("tuning", False), plugin=d.get("plugin", ""),
                   trial=d.get("trial", {}))

    def with_seed(self, seed: int) -> RunConfig:
        return dataclasses.replace(self, seed=seed)


ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT", "__bool__": lambda self: False})()


@dataclasses.dataclass
class RunRecord:
    """A stored run. Fields a record of some age may lack default to ABSENT and stay out of
    its JSON; keys this version does not know are kept in `extra` and written back."""

    run_id: str
    config: RunConfig
    status: str  # ok, diverged or failed
    reason: str
    metrics: dict
    primary_metric: str
    higher_is_better: bool
    learned: bool | None = ABSENT  # None: recorded before runs were checked against the baseline
    curve: list = ABSENT
    artifacts: dict = ABSENT
    steps_trained: int = ABSENT
    epochs_trained: int = ABSENT  # by-epoch runs only
    stopped: str = ABSENT  # steps, cap or patience
    selected_step: int = ABSENT  # train.select "best_val": the step whose weights were tested
    resumed_at: list = ABSENT  # the steps at which the run, killed, went on from its checkpoint
    effective_params: int | None = ABSENT
    backend: str = ABSENT  # the implementation that ran the recurrence
    sources: dict = ABSENT  # where the task's data came from
    baselines: dict = ABSENT  # the task's trivial baselines
    wall_time_s: float = ABSENT
    device: str = ABSENT
    machine: dict = ABSENT  # CPU model, flags, threads ... (records since machine provenance)
    worker: dict = ABSENT  # launcher, host, pid
    date: str = ABSENT
    git_commit: str = ABSENT
    dirty: bool = ABSENT  # made from a tree with uncommitted code (--allow-dirty)
    versions: dict = ABSENT
    command: str = ABSENT  # the command that made it, as the leaderboard prints it
    evaluated_on: str = ABSENT  # test, or val for tuning runs
    external: dict = ABSENT  # made by code or on a machine this repository has not verified
    stacked: dict = ABSENT  # trained in a stacked group (--stack): {"group", "members" (run ids, in order), "index",
    # "wall_time_s" (the group's)}
    extra: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> RunRecord:
        """A record read back; raises ValueError naming the first thing wrong with it."""
        wrong = problem(d)
        if wrong:
            raise ValueError(wrong)
        known = {f.name for f in dataclasses.fields(cls)} - {"config", "extra"}
        return cls(config=RunConfig.from_dict(d), **{k: v for k, v in d.items() if k in known},
                   extra={k: v for k, v in d.items()
                         if k not in known and k not in (*CONFIG_KEYS, "tuning", "plugin", "trial")})

    @classmethod
    def from_json(cls, line: str) -> RunRecord:
        return cls.from_dict(json.loads(line))

    def to_dict(self) -> dict:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | self.config.to_dict()
        out = {k: v for k, v in fields.items() if k not in ("config", "extra") and v is not ABSENT}
        return {**out, **self.extra}

    def to_json(self) -> str:
        """The line the store writes (sorted keys: the same bytes for the same record)."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=True)

    # the config's fields, read through the record
    task = property(lambda self: self.config.task)
    profile = property(lambda self: self.config.profile)
    task_params = property(lambda self: self.config.task_params)
    arch = property(lambda self: self.config.arch)
    model = property(lambda self: self.config.model)
    budget = property(lambda self: self.config.budget)
    params = property(lambda self: self.config.params)
    train = property(lambda self: self.config.train)
    seed = property(lambda self: self.config.seed)

    @property
    def primary(self) -> float | None:
        """The primary metric's value, None where the run has none (not ok)."""
        return self.metrics.get(self.primary_metric)
