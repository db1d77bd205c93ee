"""Suites: a task x architectures x budgets x seeds (x task settings), declared in
bench/suites/<task>.yaml with a `quick` and a `paper` profile, resolved here into one
fully explicit config per run. Everything is validated once, here, at the edge.

A profile need not restate a default (the dataclasses below: `match.cw_match` is
`module_size` and `match.offset` 0 unless it says otherwise), and a suite file may say
`extends: OTHER`: its profiles then start from OTHER's (synthwords runs
timit's profiles on its own corpus); its task, title and leaderboard are its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.store.records import RunConfig
from bench.suite.searchspace import SearchConfig, read_search
from models import plugins
from models.architectures import ARCHITECTURES
from models.errors import UserInputError
from models.names import OPTIMIZERS, parse_arch
from tasks import task_class

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"  # bench/suites/


TUNED = "tuned"  # train.lr: the value `cwbench tune` chose for the architecture
LOSS_REDUCTIONS = ("mean", "sum")
BIAS_INITS = ("zeros", "normal")
SELECTIONS = ("last", "best_val")  # train.select: the weights a run is tested with

# Training settings added after the first records were committed: a run's config leaves each
# out while it has this default, so that every committed run id stays what it was.
LATER_TRAIN_SETTINGS = {"init": "default", "learn_h0": False, "select": "last"}


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps; with `epochs`, unused
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | str = 1e-3  # or "tuned"
    momentum: float = 0.95
    clip: float = 1.0  # gradient-norm clipping; 0 turns it off
    val_every: int = 100  # steps between validations; with `epochs`, once per epoch
    init_std: float = 0.0  # weights ~ N(0, init_std); 0 keeps the library init
    bias_init: str = "zeros"  # with init_std: biases 0, or "normal" ~ N(0, init_std) like the weights
    lstm_forget_bias: float | None = None
    loss_reduction: str = "mean"  # over the scored time steps of a sequence: "mean" or "sum"
    epochs: int = 0  # > 0: train by epochs over a finite training set, at most this many
    patience: int = 0  # > 0 (with epochs): stop when the training metric has not improved for this many epochs
    init: str = "default"  # an initialisation of the architecture's family (models/initialisation.py)
    learn_h0: bool = False  # a learnable initial state (counted in the budget) instead of zeros
    select: str = "last"  # test the last weights, or "best_val": those of the best validation


@dataclass(frozen=True)
class TuneConfig:
    """How `cwbench tune` picks each architecture's learning rate: the same grid, seeds and
    budget for every architecture, scored on the final validation metric (never the test
    set; the task's `for_tuning` says what its validation data are)."""

    grid: list = field(default_factory=list)  # learning rates, e.g. log-spaced
    seeds: int = 2
    budget: int = 0  # 0: the profile's first budget
    steps: int = 0  # 0: the profile's steps
    task_params: dict = field(default_factory=dict)  # overrides of the profile's task params (e.g. fewer targets)


@dataclass(frozen=True)
class MatchConfig:
    tolerance: float = 0.1
    cw_match: str = "module_size"  # or "modules"
    cw_modules: int = 8
    cw_module_size: int = 1
    offset: int = 0


@dataclass
class Profile:
    archs: list[str]
    budgets: list[int]
    seeds: int
    task_params: dict = field(default_factory=dict)
    match: MatchConfig = field(default_factory=MatchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    arch_train: dict = field(default_factory=dict)  # per-architecture overrides of train, e.g. lstm: {lr: 3e-5}
    tune: TuneConfig | None = None
    search: SearchConfig | None = None  # the `tuned` protocol's search (bench/suite/search.py runs it), or None
    # every architecture trains with the settings another profile's search chose for one architecture:
    # {profile: tuned, arch: cwrnn/exponential} (a family of variants under one recipe)
    recipe: dict = field(default_factory=dict)


def _dataclass_from(cls, values: dict | None, where: str):
    values = values or {}
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise UserInputError(f"unknown setting(s) {', '.join(unknown)} in {where}: known are {', '.join(names)}")
    return cls(**values)


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name: str) -> dict:
    """The suite file of task `name`, with `extends` resolved (see the module docstring)."""
    if name not in suite_names():  # a name, never a path: `../x` must not read x.yaml from anywhere
        raise UserInputError(f"unknown task '{name}': choose one of {', '.join(suite_names())} (see `cwbench list`)")
    return _read_suite(name, [])


def _read_suite(name: str, extending: list[str]) -> dict:
    suite = yaml.safe_load((SUITES_DIR / f"{name}.yaml").read_text())
    parent = suite.get("extends")
    if parent is None:
        return suite
    where = f"bench/suites/{name}.yaml"
    if parent not in suite_names():
        raise UserInputError(f"{where} extends unknown suite '{parent}': name one of {', '.join(suite_names())}")
    if parent in [*extending, name]:
        raise UserInputError(f"{where} extends {parent}, which extends it back "
                             f"({' -> '.join([*extending, name, parent])}): remove one `extends`")
    base = _read_suite(parent, [*extending, name])
    return {**suite, "profiles": _merged(base["profiles"], suite.get("profiles") or {})}


def _merged(base: dict, over: dict) -> dict:
    """`over` laid on `base`: mappings merge key by key, anything else (lists too) replaces."""
    merged = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merged(base[key], value) if both else value
    return merged


def load_profile(suite: dict, name: str) -> Profile:
    profiles = suite["profiles"]
    if name not in profiles:
        raise UserInputError(f"unknown profile '{name}' for task {suite['task']}: choose one of {', '.join(profiles)}")
    raw = dict(profiles[name])
    where = f"bench/suites/{suite['task']}.yaml profile {name}"
    match = _dataclass_from(MatchConfig, raw.pop("match", None), where + " match")
    train = _dataclass_from(TrainConfig, raw.pop("train", None), where + " train")
    tune = _dataclass_from(TuneConfig, raw.pop("tune"), where + " tune") if raw.get("tune") else None
    search = None
    if raw.get("search"):
        search = read_search(raw.pop("search"), where + " search", {f.name for f in dataclasses.fields(TrainConfig)})
    return _dataclass_from(Profile, {**raw, "match": match, "train": train, "tune": tune, "search": search}, where)


def varying_params(task_params: list[dict]) -> list[str]:
    """The task parameters whose value differs between runs (first seen first): what names a
    run's setting (a delay, a target) in progress lines, tables and verify's rows."""
    seen: dict[str, set] = {}
    for params in task_params:
        for key, value in params.items():
            seen.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    return [key for key, values in seen.items() if len(values) > 1]


def run_id(config: dict) -> str:
    """The id of a run: a hash of its fully resolved config, seed included."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _grid(task_params: dict) -> list[dict]:
    """Lists in task_params are axes of the grid; scalars are fixed."""
    empty = [key for key, value in task_params.items() if isinstance(value, list) and not value]
    if empty:
        raise UserInputError(f"task parameter {empty[0]} is an empty list, which gives no runs: give at least one "
                             f"value (--param {empty[0]}=VALUE, or a list --param {empty[0]}=[A,B])")
    keys = list(task_params)
    axes = [v if isinstance(v, list) else [v] for v in task_params.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*axes)]


def grid_size(task_params: dict) -> int:
    """How many task settings a task_params grid gives (lists are axes)."""
    return math.prod(len(v) if isinstance(v, list) else 1 for v in task_params.values())


def task_parameters(task_name: str) -> list[str]:
    """The parameters a task takes (its constructor's keyword arguments)."""
    signature = inspect.signature(task_class(task_name).__init__)
    return [p.name for p in signature.parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def make_task(task_name: str, params: dict):
    known = task_parameters(task_name)
    cls = task_class(task_name)
    takes_more = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    unknown = [key for key in params if key not in known]
    if unknown and not takes_more:
        raise UserInputError(f"unknown parameter '{unknown[0]}' for task {task_name}: its parameters are "
                             f"{', '.join(known)} (set one with --param KEY=VALUE)")
    try:
        return cls(**params)
    except TypeError as err:
        raise UserInputError(f"bad parameters for task {task_name} ({err}): its parameters are "
                             f"{', '.join(known)} (set one with --param KEY=VALUE)") from None


def _is_positive(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


def validate_train(train: TrainConfig) -> None:
    if train.optimizer not in OPTIMIZERS:
        raise UserInputError(f"unknown optimizer '{train.optimizer}': choose one of {', '.join(OPTIMIZERS)}")
    for name in ("steps", "batch_size", "val_every"):
        value = getattr(train, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"bad train.{name} {value!r}: it must be a positive integer")
    for name in ("epochs", "patience"):
        value = getattr(train, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserInputError(f"bad train.{name} {value!r}: it must be an integer >= 0 (0 = off)")
    if train.patience and not train.epochs:
        raise UserInputError("train.patience needs train.epochs (the cap on epochs): set both")
    if train.lr != TUNED and not (_is_positive(train.lr) and math.isfinite(train.lr)):
        raise UserInputError(f"bad learning rate train.lr={train.lr!r}: it must be a positive number, or '{TUNED}'")
    for name, low, high, meaning in (("clip", 0, math.inf, "the largest gradient norm, 0 = off"),
                                     ("momentum", 0, 1, "between 0 and 1"),
                                     ("init_std", 0, math.inf, "0 keeps the library's initialization"),
                                     ("lstm_forget_bias", -math.inf, math.inf, "or leave it unset")):
        value = getattr(train, name)
        if name == "lstm_forget_bias" and value is None:
            continue
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if not (number and math.isfinite(value) and low <= value <= high):
            raise UserInputError(f"bad train.{name} {value!r}: it must be a finite number ({meaning}); "
                                 f"e.g. --train {name}={getattr(TrainConfig, name) or 1.0}")
    if train.loss_reduction not in LOSS_REDUCTIONS:
        raise UserInputError(f"bad train.loss_reduction {train.loss_reduction!r}: choose one of "
                             f"{', '.join(LOSS_REDUCTIONS)}")
    if train.select not in SELECTIONS:
        raise UserInputError(f"bad train.select {train.select!r}: choose one of {', '.join(SELECTIONS)}")
    if not isinstance(train.learn_h0, bool):
        raise UserInputError(f"bad train.learn_h0 {train.learn_h0!r}: it must be true or false")
    if not isinstance(train.init, str) or not train.init:
        raise UserInputError(f"bad train.init {train.init!r}: name an initialisation, e.g. --train init=default")
    if train.bias_init not in BIAS_INITS:
        raise UserInputError(f"bad train.bias_init {train.bias_init!r}: choose one of {', '.join(BIAS_INITS)}")


def train_dict(train: TrainConfig) -> dict:
    """The training settings as a run's config holds them (LATER_TRAIN_SETTINGS left out at their default)."""
    return {key: value for key, value in dataclasses.asdict(train).items()
            if not (key in LATER_TRAIN_SETTINGS and value == LATER_TRAIN_SETTINGS[key])}


def train_setting(train: dict, key: str):
    """One setting of a run's config's `train`, its default where the config leaves it out."""
    return train[key] if key in train else LATER_TRAIN_SETTINGS[key]


def counted_inputs(task) -> int:
    """Input features that carry parameters: none for an all-zero input."""
    return 0 if task.zero_input else task.input_size


def train_for(profile: Profile, arch: str) -> TrainConfig:
    overrides = profile.arch_train.get(arch, {})
    train = _dataclass_from(TrainConfig, {**dataclasses.asdict(profile.train), **overrides},
                            f"arch_train.{arch}")
    validate_train(train)
    check_init(train.init, arch)
    return train


def check_init(init: str, arch: str) -> None:
    """An initialisation the architecture's entry (models/architectures.py) says it takes."""
    takes = ARCHITECTURES[arch].inits
    if init not in takes:
        raise UserInputError(f"init {init} does not apply to {arch}: its initialisations are {', '.join(takes)} "
                             "(--train init=NAME)")


def resolve(task_name: str, profile_name: str, profile: Profile, tuned: dict | None = None) -> list[tuple]:
    """All runs of a suite as (RunConfig, task) pairs, in sweep order. `tuned` maps an
    architecture label to what tuning chose for it: the training settings a search chose
    (a dict; a profile with a `search`), or the learning rate of the grid (train.lr "tuned")."""
    from bench.suite.budget import match_budget  # closed-form counts: no torch

    validate_train(profile.train)
    if profile.seeds < 1:
        raise UserInputError(f"bad --seeds {profile.seeds}: run at least one seed")
    runs = []
    for params in _grid(profile.task_params):
        task = make_task(task_name, params)
        if profile.train.epochs and task.epoch_batches(profile.train.batch_size) is None:
            raise UserInputError(f"task {task_name} trains on an endless stream of batches: it has no epochs, "
                                 "use train.steps (not train.epochs)")
        for budget in profile.budgets:
            for label in profile.archs:
                m = profile.match
                settings = _tuned_train(task_name, profile_name, profile, label, tuned)
                match = match_budget(label, budget, counted_inputs(task), task.output_size, tolerance=m.tolerance,
                                     cw_match=m.cw_match, cw_modules=m.cw_modules,
                                     cw_module_size=m.cw_module_size, offset=m.offset, learn_h0=settings.learn_h0)
                if settings.select == "best_val" and task.validates_on_test():
                    raise UserInputError(
                        f"train.select best_val would pick {label}'s weights on the test set of task {task_name} "
                        "(its validation data are the test set): hold out validation data, e.g. --param holdout=1, "
                        "or use --train select=last")
                train = train_dict(settings)
                for seed in range(profile.seeds):
                    config = RunConfig(task_name, profile_name, task.params(), match.spec.label,
                                       match.spec.to_dict(), budget, match.params, train, seed,
                                       **plugins.config_fields(match.spec.arch))  # plugin=name; none for a built-in
                    runs.append((config, task))
    return runs


def _tuned_train(task_name: str, profile_name: str, profile: Profile, label: str, tuned: dict | None) -> TrainConfig:
    """An architecture's training settings: the profile's, with what tuning chose for it."""
    arch, schedule = parse_arch(label)
    train = train_for(profile, arch)
    if profile.search is None and not profile.recipe and train.lr != TUNED:
        return train
    tuned = tuned or {}
    chosen = tuned.get(label, tuned.get(f"{arch}/{schedule}" if schedule else arch))
    if chosen is None:
        raise UserInputError(
            f"no tuned settings for {label} in profile {profile_name} of task {task_name}: run "
            f"`cwbench tune {task_name} --profile {profile_name}` first (with the same --results folder)")
    train = dataclasses.replace(train, **chosen) if isinstance(chosen, dict) else dataclasses.replace(train, lr=chosen)
    validate_train(train)
    check_init(train.init, arch)
    return train
