"""A profile's `search` section, as declared in bench/suites/<task>.yaml and checked once here:
S studies x O trials, the sampler, the tuning data and the search space (bench/suite/search.py
runs it). Plain data: no Optuna, no torch; bench/suite/suites.py reads it with the profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from models.errors import UserInputError

SAMPLERS = {"random": "optuna.samplers:RandomSampler", "tpe": "optuna.samplers:TPESampler"}
KINDS = ("log_uniform", "uniform", "choice", "family")  # how a dimension of the space is written
FAMILIES = {"init": "inits"}  # family dimensions: the setting, and the Architecture field listing its values
SEED_STRIDE = 100  # study s trains its runs with seeds seed_offset + s * SEED_STRIDE + j


@dataclass(frozen=True)
class SearchConfig:
    """A profile's `search` section (bench/suites/<task>.yaml)."""

    studies: int = 2  # S: independent studies per architecture
    trials: int = 16  # O: trials per study
    sampler: str = "random"  # one of SAMPLERS, seeded with seed + study
    seed: int = 0
    batch: int = 0  # trials asked before any is told; 0: all of a study's at once (for "random")
    seeds: int = 1  # runs per trial and tuning setting
    seed_offset: int = 1000  # tuning runs' seeds start here, apart from every final run's (0, 1, ...)
    budget: int = 0  # 0: the profile's largest budget
    steps: int = 0  # 0: the profile's steps
    task_params: dict = field(default_factory=dict)  # the tuning data, over the profile's task params
    space: dict = field(default_factory=dict)  # setting -> {kind: values}, kind one of KINDS


def read_search(raw: dict, where: str, train_fields: set[str]) -> SearchConfig:
    """The section `raw`, checked; `train_fields`: the training settings a space may search."""
    names = {f.name for f in dataclasses.fields(SearchConfig)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise UserInputError(f"unknown setting(s) {', '.join(unknown)} in {where}: known are {', '.join(names)}")
    search = SearchConfig(**raw)
    for name in ("studies", "trials", "seeds"):
        value = getattr(search, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"bad {where}.{name} {value!r}: it must be a positive integer")
    if search.sampler not in SAMPLERS:
        raise UserInputError(f"unknown sampler {search.sampler!r} in {where}: choose one of {', '.join(SAMPLERS)}")
    if not search.space:
        raise UserInputError(f"{where} has no space: declare at least one setting to search, e.g. lr")
    for setting, spec in search.space.items():
        if setting not in train_fields:
            raise UserInputError(f"{where}.space.{setting} is not a training setting: search one of "
                                 f"{', '.join(sorted(train_fields))}")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise UserInputError(f"bad {where}.space.{setting} {spec!r}: write it as one of "
                                 "{log_uniform: [LOW, HIGH]}, {uniform: [LOW, HIGH]}, {choice: [A, B, ...]}, "
                                 "{family: true}")
        kind, values = next(iter(spec.items()))
        if kind in ("log_uniform", "uniform"):
            ok = (isinstance(values, list) and len(values) == 2
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
                  and values[0] < values[1] and (kind == "uniform" or values[0] > 0))
            if not ok:
                raise UserInputError(f"bad {where}.space.{setting} {spec!r}: give [LOW, HIGH] with LOW < HIGH"
                                     + (" and LOW > 0" if kind == "log_uniform" else ""))
        elif kind == "choice" and not (isinstance(values, list) and values):
            raise UserInputError(f"bad {where}.space.{setting} {spec!r}: give a non-empty list of values")
        elif kind == "family" and setting not in FAMILIES:
            raise UserInputError(f"{where}.space.{setting}: only {', '.join(FAMILIES)} is searched over an "
                                 "architecture's own family")
    return search
