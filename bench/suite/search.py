"""The `tuned` protocol's search: the same number of trials from one declared search space for
every architecture (`cwbench tune TASK --profile tuned`), and each architecture's chosen
training settings, which `cwbench run TASK --profile tuned` trains with new seeds.

A profile's `search` section declares S studies of O trials each (the same for every
architecture), a seeded Optuna sampler, the search space (one space per task: learning rate,
clipping, initialisation scale, optimizer, the architecture's own initialisation family, a
learnable initial state) and the tuning data (never the test data: `Task.for_tuning`; audio
tunes on targets of its own). A trial is `seeds` ordinary runs per tuning setting, dispatched
by the sweep's launchers and stored by its one writer in results/<task>/tuning.jsonl; its
score is the mean final validation metric of its runs (a diverged run scores the trivial
baseline).

The tuning store is the source of truth: a study is rebuilt from it by replaying Optuna's
ask/tell with the study's seed — the same asks give the same trials, whose runs are looked
up by run id — so a search resumes like `cwbench run` (kill -9, a second machine on the same
store) and the committed store *is* the study. Trials are asked `batch` at a time before any
is told (random search needs no rounds: all are asked at once), fixed by the profile and not
by the number of workers, so the trials do not depend on how the search was run.

The chosen configuration of an architecture follows the median-of-studies rule (AlgoPerf):
each study's best trial, and of those the median study's (for an even number of studies
the worse of the middle two: a lucky study does not decide). No pruning: every trial trains
for the profile's full budget (the copy LSTM sits at chance for thousands of steps before
it learns, longer than any grace period a pruner would be given).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from bench.store.records import RunConfig
from bench.suite.searchspace import FAMILIES, SAMPLERS, SEED_STRIDE, SearchConfig
from bench.suite.suites import Profile, grid_size, resolve, train_setting
from models.errors import UserInputError


@dataclass(frozen=True)
class Trial:
    """One trial of one study: its settings, its runs, and its score once all are stored."""

    arch: str
    study: int
    number: int
    settings: dict
    runs: list  # (RunConfig, task) pairs
    score: float | None = None  # mean validation metric; None while runs are missing
    diverged: int = 0


def family(arch: str, setting: str) -> tuple:
    """The values an architecture takes for a family dimension (its own initialisations)."""
    from models.architectures import ARCHITECTURES

    return tuple(getattr(ARCHITECTURES[arch], FAMILIES[setting], ("default",)))


def distributions(search: SearchConfig, arch: str) -> dict:
    """The search space as Optuna distributions for one architecture (the family dimension's
    choices are its own; every other dimension is the same for every architecture)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    space = {}
    for setting, spec in search.space.items():
        kind, values = next(iter(spec.items()))
        if kind in ("log_uniform", "uniform"):
            space[setting] = FloatDistribution(float(values[0]), float(values[1]), log=kind == "log_uniform")
        elif kind == "choice":
            space[setting] = CategoricalDistribution(values)
        else:
            space[setting] = CategoricalDistribution(family(arch, setting))
    return space


def tuning_profile(profile: Profile) -> tuple[Profile, SearchConfig]:
    search = profile.search
    base = dataclasses.replace(
        profile, budgets=[search.budget or max(profile.budgets)], seeds=search.seeds,
        task_params={**profile.task_params, **search.task_params}, arch_train={}, search=None)
    if search.steps:
        base = dataclasses.replace(base, train=dataclasses.replace(profile.train, steps=search.steps))
    return base, search


def signature(search: SearchConfig) -> str:
    """What makes two searches one: the space, sampler, seeds and tuning data — not the number of
    studies or trials, so that a search given more trials goes on from the ones it has."""
    kept = {k: v for k, v in dataclasses.asdict(search).items() if k not in ("studies", "trials")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def trial_runs(task_name: str, profile_name: str, profile: Profile, arch: str, study: int, number: int,
               settings: dict) -> list[tuple[RunConfig, object]]:
    """The runs of one trial: the architecture at the tuning budget, on the tuning data, with
    the trial's settings, `seeds` seeds of its study's own range."""
    base, search = tuning_profile(profile)
    train = dataclasses.replace(base.train, **settings)
    runs = []
    for config, task in resolve(task_name, profile_name, dataclasses.replace(base, archs=[arch], train=train)):
        tuning_task = task.for_tuning()
        seed = search.seed_offset + study * SEED_STRIDE + config.seed
        runs.append((dataclasses.replace(config, task_params=tuning_task.params(), tuning=True, seed=seed,
                                         trial={"study": study, "number": number, "search": signature(search)}),
                     tuning_task))
    return runs


def _score(record: dict) -> float:
    if record["status"] == "ok":
        return record["metrics"][record["primary_metric"]]
    return record["baselines"].get(record["primary_metric"], math.nan)  # diverged: the trivial baseline


def _sampler(search: SearchConfig, study: int):
    from models.architectures import load

    return load(SAMPLERS[search.sampler])(seed=search.seed + study)


def replay(task_name: str, profile_name: str, profile: Profile, records: list[dict],
           rounds: int | None = None) -> list[Trial]:
    """Every trial of the search, rebuilt from the stored records: the trials asked so far (all
    of them where every earlier round is stored; `rounds` caps the replay), with a score where
    all of a trial's runs are stored ok or diverged. Every architecture's study s uses the
    same sampler seed, so random search gives every architecture the same draws."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, search = tuning_profile(profile)
    by_id = {r["run_id"]: r for r in records if r.get("status") in ("ok", "diverged")}
    known = {(t.arch, t.study, t.number): t for t in stored_trials(profile_name, profile, records)}
    trials: list[Trial] = []
    batch = search.batch or search.trials
    for arch in profile.archs:
        space = distributions(search, _arch_name(arch))
        for study in range(search.studies):
            direction = 1
            study_trials = []
            opt = None
            done_rounds = 0
            number = 0
            while number < search.trials and (rounds is None or done_rounds < rounds):
                if opt is None:
                    opt = optuna.create_study(sampler=_sampler(search, study), direction="minimize")
                asked = [opt.ask(space) for _ in range(min(batch, search.trials - number))]
                complete = True
                for trial in asked:
                    settings = dict(trial.params)
                    _check_same(known.get((arch, study, trial.number)), settings, records)
                    runs = trial_runs(task_name, profile_name, profile, arch, study, trial.number, settings)
                    stored = [by_id.get(config.run_id) for config, _ in runs]
                    score, diverged = None, 0
                    if all(stored):
                        direction = -1 if stored[0]["higher_is_better"] else 1
                        score = sum(_score(r) for r in stored) / len(stored)
                        diverged = sum(r["status"] == "diverged" for r in stored)
                    else:
                        complete = False
                    study_trials.append(Trial(arch, study, trial.number, settings, runs, score, diverged))
                number += len(asked)
                done_rounds += 1
                if not complete:
                    break  # a later round's trials depend on this round's scores (TPE)
                for trial, done in zip(asked, study_trials[-len(asked):]):
                    # Optuna minimises; a score that is higher-better is told negated
                    opt.tell(trial, direction * done.score if math.isfinite(done.score) else math.inf)
            trials.extend(study_trials)
    return trials


def _check_same(stored: Trial | None, settings: dict, records: list[dict]) -> None:
    """A stored trial must be what this Optuna asks again; another version's sampler may draw
    other numbers, and the search could then not go on from the store."""
    if stored is None or stored.settings == settings:
        return
    import optuna

    made = sorted({r.get("versions", {}).get("optuna", "unknown") for r in records if r.get("trial")})
    raise UserInputError(
        f"the stored trial {stored.number} of study {stored.study} for {stored.arch} has other settings than this "
        f"Optuna {optuna.__version__} asks again ({stored.settings} stored): the search was made with optuna "
        f"{', '.join(made)}; install that version to go on with it (what it chose reads the same with any version)")


def _arch_name(label: str) -> str:
    from models.names import parse_arch

    return parse_arch(label)[0]


def stored_trials(profile_name: str, profile: Profile, records: list[dict]) -> list[Trial]:
    """Every trial of the profile's search that the store holds, from the records alone (no
    Optuna: what a search chose reads the same with any Optuna version), with a score where
    all of its runs are stored ok or diverged."""
    _, search = tuning_profile(profile)
    sig = signature(search)
    mine = [r for r in search_records(profile_name, records)
            if r["trial"].get("search") == sig and r["arch"] in profile.archs
            and r["trial"]["study"] < search.studies and r["trial"]["number"] < search.trials]
    trials = group_trials(mine, list(search.space), runs_per_trial(profile))
    return sorted(trials, key=lambda t: (profile.archs.index(t.arch), t.study, t.number))


def search_records(profile_name: str, records: list[dict]) -> list[dict]:
    """The stored trial runs of a profile's searches that finished (ok or diverged)."""
    return [r for r in records if r.get("profile") == profile_name and r.get("trial")
            and r.get("status") in ("ok", "diverged")]


def runs_per_trial(profile: Profile) -> int:
    _, search = tuning_profile(profile)
    return search.seeds * grid_size({**profile.task_params, **search.task_params})


def group_trials(records: list[dict], space: list[str], expected: int) -> list[Trial]:
    """The trials of one search's records (grouped by architecture, study and number), each
    scored where it has `expected` runs: the mean validation metric (diverged: the baseline)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["arch"], r["trial"]["study"], r["trial"]["number"]), []).append(r)
    trials = []
    for (arch, study, number), stored in groups.items():
        settings = {key: train_setting(stored[0]["train"], key) for key in space}
        done = len({r["run_id"] for r in stored}) >= expected
        score = sum(_score(r) for r in stored) / len(stored) if done else None
        trials.append(Trial(arch, study, number, settings, stored, score,
                            sum(r["status"] == "diverged" for r in stored)))
    return trials


def pending_runs(trials: list[Trial], records: list[dict]) -> list[tuple[RunConfig, object]]:
    """The runs of the trials asked so far that the store does not hold ok or diverged."""
    stored = {r["run_id"] for r in records if r.get("status") in ("ok", "diverged")}
    return [(config, task) for t in trials for config, task in t.runs if config.run_id not in stored]


def chosen_trials(trials: list[Trial], profile: Profile, higher_is_better: bool) -> dict[str, Trial]:
    """The trial whose settings each architecture trains with, by the median-of-studies rule
    (module docstring); raises, naming the command, while any trial has no score."""
    search = profile.search
    missing: dict[str, int] = {}
    for arch in profile.archs:
        done = sum(1 for t in trials if t.arch == arch and t.score is not None)
        if done < search.studies * search.trials:
            missing[arch] = search.studies * search.trials - done
    if missing:
        raise UserInputError(
            "the search is not complete (" + ", ".join(f"{a}: {n} trials to go" for a, n in missing.items())
            + "): run `cwbench tune TASK --profile PROFILE` first, with the same --archs and --results")
    sign = -1 if higher_is_better else 1
    choice = {}
    for arch in profile.archs:
        bests = []
        for study in range(search.studies):
            scored = [t for t in trials if t.arch == arch and t.study == study]
            bests.append(min(scored, key=lambda t: (_key(sign * t.score), t.number)))
        bests.sort(key=lambda t: (_key(sign * t.score), t.study))
        choice[arch] = bests[len(bests) // 2]
    return choice


def _key(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def searched_settings(task_name: str, profile_name: str, profile: Profile, results_dir: Path) -> dict[str, dict]:
    """Each architecture's chosen settings from the stored search (what `run --profile tuned` trains)."""
    from bench.store.results import ResultsStore
    from bench.suite.tuning import TUNING_STORE

    path = Path(results_dir) / task_name / TUNING_STORE
    records = ResultsStore(path).load() if path.exists() else []
    trials = stored_trials(profile_name, profile, records)
    higher = next((r["higher_is_better"] for r in records), False)
    try:
        return {arch: dict(t.settings) for arch, t in chosen_trials(trials, profile, higher).items()}
    except UserInputError as err:
        raise UserInputError(str(err).replace("TASK", task_name).replace("PROFILE", profile_name)) from None


def recipe_sources(profile: Profile, where: str) -> dict[str, str]:
    """Whose choice each row of a recipe profile trains with: `arch: ARCH` gives every row one
    architecture's recipe (a family of variants under one recipe); no `arch`, each row its own
    architecture's; `arch: {ROW: ARCH}` maps the rows a search did not tune (e.g. one CW-RNN
    variant) to one it did, the others keeping their own."""
    recipe = profile.recipe
    arch = recipe.get("arch")
    if "profile" not in recipe or set(recipe) - {"profile", "arch"} or not isinstance(arch, (str, dict, type(None))):
        raise UserInputError(f"bad {where} {recipe!r}: write {{profile: PROFILE}} (each row its own architecture's "
                             "recipe), {profile: PROFILE, arch: ARCH} (every row one architecture's), or "
                             "{profile: PROFILE, arch: {ROW: ARCH}}, e.g. {profile: tuned, arch: cwrnn/exponential}")
    if isinstance(arch, str):
        return {label: arch for label in profile.archs}
    return {label: (arch or {}).get(label, label) for label in profile.archs}


def recipe_settings(task_name: str, profile_name: str, profile: Profile, results_dir: Path) -> dict[str, dict]:
    """Each row's settings of a profile's `recipe`: what another profile's search chose for the
    architecture whose recipe the row takes (recipe_sources)."""
    from bench.suite.suites import load_profile, load_suite

    recipe = profile.recipe
    where = f"bench/suites/{task_name}.yaml profile {profile_name} recipe"
    sources = recipe_sources(profile, where)
    source = load_profile(load_suite(task_name), recipe["profile"])
    if source.search is None:
        raise UserInputError(f"{where}: profile {recipe['profile']} has no search to take a recipe from")
    untuned = sorted({arch for arch in sources.values() if arch not in source.archs})
    if untuned:
        raise UserInputError(f"{where}: the search of profile {recipe['profile']} tunes no {', '.join(untuned)}: "
                             "map such a row to an architecture it tunes, e.g. arch: {ROW: cwrnn/exponential}")
    source.archs = sorted(set(sources.values()))
    try:
        chosen = searched_settings(task_name, recipe["profile"], source, results_dir)
    except UserInputError as err:
        raise UserInputError(f"profile {profile_name} trains with the recipe the search of profile "
                             f"{recipe['profile']} chose for {', '.join(source.archs)}: {err}") from None
    return {label: chosen[arch] for label, arch in sources.items()}


def tuned_settings(task_name: str, profile_name: str, profile: Profile, results_dir: Path) -> dict | None:
    """What `resolve` needs from tuning for this profile: each architecture's searched settings
    (a profile with a `search`), its learning rate from the grid (train.lr "tuned"), or None."""
    from bench.suite.tuning import needs_tuning, tuned_rates

    if profile.search is not None:
        return searched_settings(task_name, profile_name, profile, results_dir)
    if profile.recipe:
        return recipe_settings(task_name, profile_name, profile, results_dir)
    return tuned_rates(task_name, profile_name, profile, results_dir) if needs_tuning(profile) else None
