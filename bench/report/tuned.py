"""The reports of the `tuned` protocol (bench/suite/search.py): what a leaderboard says about a
profile's search and about the protocols side by side, computed from the stores only.

- `search_report`: a profile's search as stored in results/<task>/tuning.jsonl — every trial
  (its settings, score, diverged runs, whether any of its runs learned), each architecture's
  chosen trial by the search's own median-of-studies rule (`chosen_trials`), the search table
  (one row per architecture) and the sentences a reader must not miss (an architecture that
  learned in no trial), the JSON of the search space and choices, the trials' CSV, and the
  expected best validation score against the number of trials (Dodge et al. 2019).
- `protocol_table`: each architecture x budget trained under both a searched profile and
  another (the paper's recipe, a fixed one) with the same task settings: both means and their
  ratio.
- `profile_order` and `protocol_line`: the headline (searched) profiles first, the paper's
  recipe second, and each profile's protocol in one line.

Trials are rebuilt from the stored records (grouped by architecture, study and trial number),
not by replaying the sampler: a search run with `--trials/--studies/--steps` overrides is
reported as it was run, and the report says where it differs from the suite file. The records
of a second search in the same store (other fixed settings) are counted and left out.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.report.stats import expected_best
from bench.suite.search import (
    Trial,
    chosen_trials,
    group_trials,
    runs_per_trial,
    search_records,
    signature,
    tuning_profile,
)
from bench.suite.suites import Profile, load_profile, train_setting
from bench.suite.tuning import needs_tuning
from models.errors import UserInputError


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _metric(value) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4g}"


@dataclass
class SearchReport:
    """One searched profile's search, as stored."""

    task: str
    profile_name: str
    profile: Profile
    primary: str
    higher: bool
    space: list[str]  # the searched settings, in the suite file's order
    archs: list[str]
    studies: int  # as stored (the suite file's unless overridden on the command line)
    trials: int  # per study, as stored
    trials_list: list[Trial] = field(default_factory=list)
    learned: dict = field(default_factory=dict)  # (arch, study, number) -> any run learned (None: unrecorded)
    chosen: dict = field(default_factory=dict)  # arch -> Trial
    incomplete: dict = field(default_factory=dict)  # arch -> the reason no trial is chosen
    trained: dict = field(default_factory=dict)  # arch -> the settings the profile's runs trained with
    fixed: dict = field(default_factory=dict)  # the stored trials' settings that were not searched
    budget: int | None = None
    tuning_data: list = field(default_factory=list)  # the distinct task settings the trials ran on
    left_out: int = 0  # records of another search in the same store
    baseline: float | None = None  # the task's trivial baseline of the primary metric on the tuning data

    def arch_trials(self, arch: str) -> list[Trial]:
        return [t for t in self.trials_list if t.arch == arch]

    def scores(self, arch: str) -> list[float]:
        return [t.score for t in self.arch_trials(arch) if t.score is not None and math.isfinite(t.score)]

    def best(self, values: list[float]) -> float | None:
        if not values:
            return None
        return max(values) if self.higher else min(values)

    def table(self) -> pd.DataFrame:
        """The search table: one row per architecture."""
        rows = []
        for arch in self.archs:
            trials = self.arch_trials(arch)
            done = [t for t in trials if t.score is not None]
            chosen = self.chosen.get(arch)
            scores = self.scores(arch)
            row = {"arch": arch, "trials": f"{len(done)} of {self.studies} x {self.trials}",
                   "studies": len({t.study for t in done})}
            for setting in self.space:
                row[setting] = _shown(chosen.settings.get(setting)) if chosen else "—"
            row["chosen trial"] = f"study {chosen.study}, trial {chosen.number}" if chosen else "—"
            row[f"chosen {self.primary}"] = _metric(chosen.score) if chosen else "—"
            row[f"best {self.primary}"] = _metric(self.best(scores))
            row[f"median {self.primary}"] = _metric(float(np.median(scores)) if scores else None)
            row["diverged trials"] = sum(1 for t in done if t.diverged)
            learned = [self.learned.get((t.arch, t.study, t.number)) for t in done]
            row["trials learned"] = "—" if any(v is None for v in learned) else sum(learned)
            rows.append(row)
        return pd.DataFrame(rows)

    def sentences(self) -> list[str]:
        """What the search table must not hide: an architecture that learned in no trial (its
        whole search failing), a search that is not complete, runs that did not train the
        choice, a search run at other sizes than the suite file declares."""
        lines = []
        for arch in self.archs:
            done = [t for t in self.arch_trials(arch) if t.score is not None]
            learned = [self.learned.get((t.arch, t.study, t.number)) for t in done]
            if done and all(v is False for v in learned):
                lines.append(f"{arch}: none of its {len(done)} trials learned (best validation {self.primary} "
                             f"{_metric(self.best(self.scores(arch)))}): its whole search is shown failing.")
            if arch in self.incomplete:
                lines.append(f"{arch}: no trial chosen: {self.incomplete[arch]}.")
            trained = self.trained.get(arch)
            chosen = self.chosen.get(arch)
            if chosen and trained is not None and trained != {k: chosen.settings.get(k) for k in trained}:
                lines.append(f"{arch}: the profile's runs trained "
                             + ", ".join(f"{k}={_shown(v)}" for k, v in trained.items())
                             + ", not this search's choice: rerun `cwbench run "
                             f"{self.task} --profile {self.profile_name}` after the search.")
        done = {a: sum(1 for t in self.arch_trials(a) if t.score is not None) for a in self.archs}
        if len(set(done.values())) > 1:
            lines.append("The architectures have not completed the same number of trials ("
                         + ", ".join(f"{a} {n}" for a, n in done.items()) + "): the search is not finished, and "
                         "its rows are not yet comparable.")
        declared = self.profile.search
        if (declared.studies, declared.trials) != (self.studies, self.trials):
            lines.append(f"This search ran {self.studies} x {self.trials} trials per architecture; the suite file "
                         f"declares {declared.studies} x {declared.trials} (the command overrode it).")
        if self.left_out:
            lines.append(f"{self.left_out} stored tuning runs of another search of this profile (other fixed "
                         "settings) are left out.")
        return lines

    def trials_frame(self) -> pd.DataFrame:
        """Every trial (trials_<profile>.csv)."""
        rows = []
        for t in sorted(self.trials_list, key=lambda t: (self.archs.index(t.arch), t.study, t.number)):
            chosen = self.chosen.get(t.arch)
            rows.append({"arch": t.arch, "study": t.study, "number": t.number,
                         **{s: t.settings.get(s) for s in self.space},
                         "score": t.score, "runs": len(t.runs), "diverged": t.diverged,
                         "learned": self.learned.get((t.arch, t.study, t.number)),
                         "chosen": chosen is not None and (chosen.study, chosen.number) == (t.study, t.number)})
        return pd.DataFrame(rows, columns=["arch", "study", "number", *self.space, "score", "runs", "diverged",
                                           "learned", "chosen"])

    def expected_best_frame(self) -> pd.DataFrame:
        """Dodge et al.'s expected best validation score of n trials, n = 1..S x O, per
        architecture, with ± 1 std clipped to the observed scores (Dodge's band)."""
        rows = []
        for arch in self.archs:
            scores = self.scores(arch)
            if not scores:
                continue
            means, stds = expected_best(scores, higher_is_better=self.higher)
            for n, (mean, std) in enumerate(zip(means, stds), start=1):
                rows.append({"arch": arch, "trials": n, "expected_best": mean, "std": std,
                             "low": max(min(scores), mean - std), "high": min(max(scores), mean + std)})
        return pd.DataFrame(rows, columns=["arch", "trials", "expected_best", "std", "low", "high"])

    def as_json(self) -> dict:
        """search_<profile>.json: the declared search, what was stored, and each choice."""
        declared = self.profile.search
        base, _ = tuning_profile(self.profile)
        architectures = {}
        for arch in self.archs:
            done = [t for t in self.arch_trials(arch) if t.score is not None]
            chosen = self.chosen.get(arch)
            scores = self.scores(arch)
            architectures[arch] = {
                "trials_completed": len(done),
                "diverged_trials": sum(1 for t in done if t.diverged),
                "best_score": self.best(scores),
                "median_score": float(np.median(scores)) if scores else None,
                "chosen": None if chosen is None else {
                    "settings": chosen.settings, "study": chosen.study, "trial": chosen.number,
                    "score": chosen.score},
                "not_chosen_because": self.incomplete.get(arch),
                "trained_settings": self.trained.get(arch),
            }
        return {
            "task": self.task, "profile": self.profile_name,
            "metric": self.primary, "higher_is_better": self.higher, "evaluated_on": "val",
            "rule": "median of studies: each study's best trial, and of those the median study's "
                    "(for an even number of studies the worse of the middle two)",
            "declared": {**dataclasses.asdict(declared),
                         "budget": declared.budget or max(self.profile.budgets),
                         "steps": declared.steps or base.train.steps},
            "stored": {"studies": self.studies, "trials_per_study": self.trials, "budget": self.budget,
                       "fixed_settings": self.fixed, "tuning_data": self.tuning_data,
                       "runs": sum(len(t.runs) for t in self.trials_list), "left_out_runs": self.left_out},
            "architectures": architectures,
        }


def search_report(task: str, profile_name: str, profile: Profile, tuning: list[dict],
                  runs: list[dict] | None = None) -> SearchReport | None:
    """The stored search of a profile with a `search` section (None without tuning records).
    `runs`: the profile's records in runs.jsonl, to check that they trained the choice."""
    space = list(profile.search.space)
    mine = search_records(profile_name, tuning)
    if not mine:
        return None
    # one search: the suite file's where the store has it, else the one with the most runs
    searches = Counter(r["trial"].get("search") for r in mine)
    declared = signature(profile.search)
    kept = declared if declared in searches else searches.most_common(1)[0][0]
    left_out = sum(n for key, n in searches.items() if key != kept)
    mine = [r for r in mine if r["trial"].get("search") == kept]
    primary, higher = mine[0]["primary_metric"], bool(mine[0]["higher_is_better"])
    # a trial with fewer runs than the search gives each is still training
    per_trial = runs_per_trial(profile) if kept == declared else max(Counter(
        (r["arch"], r["trial"]["study"], r["trial"]["number"]) for r in mine).values())
    found = group_trials(mine, space, per_trial)
    groups = {(t.arch, t.study, t.number): t.runs for t in found}
    listed = [a for a in profile.archs if any(k[0] == a for k in groups)]
    archs = listed + sorted({k[0] for k in groups} - set(listed))
    studies = max(k[1] for k in groups) + 1
    trials_per_study = max(k[2] for k in groups) + 1
    report = SearchReport(task, profile_name, profile, primary, higher, space, archs, studies, trials_per_study,
                          left_out=left_out, budget=mine[0]["budget"],
                          fixed={k: v for k, v in mine[0]["train"].items() if k not in space})
    baselines = [r.get("baselines", {}).get(primary) for r in mine]
    if baselines and all(isinstance(b, (int, float)) for b in baselines):
        report.baseline = float(np.mean(baselines))
    report.tuning_data = sorted({json.dumps(r["task_params"], sort_keys=True) for r in mine})
    report.tuning_data = [json.loads(d) for d in report.tuning_data]
    for trial in sorted(found, key=lambda t: (t.study, t.number)):
        report.trials_list.append(trial)
        flags = [r.get("learned") for r in trial.runs]
        report.learned[(trial.arch, trial.study, trial.number)] = None if any(f is None for f in flags) else any(flags)
    search = dataclasses.replace(profile.search, studies=studies, trials=trials_per_study)
    for arch in archs:
        view = dataclasses.replace(profile, archs=[arch], search=search)
        try:
            report.chosen[arch] = chosen_trials(report.trials_list, view, higher)[arch]
        except UserInputError:
            done = sum(1 for t in report.arch_trials(arch) if t.score is not None)
            report.incomplete[arch] = f"{done} of {studies} x {trials_per_study} trials complete"
    for r in runs or []:
        if r.get("profile") == profile_name:
            report.trained.setdefault(r["arch"], {k: train_setting(r["train"], k) for k in space})
    return report


def reports_for(task: str, suite: dict, tuning: list[dict], runs: list[dict]) -> dict[str, SearchReport]:
    """The search report of every profile of the suite that has a search and stored trials."""
    reports = {}
    for name in suite.get("profiles", {}):
        profile = _profile(suite, name)
        if profile is None or profile.search is None:
            continue
        report = search_report(task, name, profile, tuning, runs)
        if report is not None:
            reports[name] = report
    return reports


def _profile(suite: dict, name: str) -> Profile | None:
    if name not in suite.get("profiles", {}):
        return None
    try:
        return load_profile(suite, name)
    except UserInputError:
        return None  # a stored profile the suite file no longer has


def profile_order(profiles, suite: dict) -> list[str]:
    """The order of a leaderboard's profile sections: the searched (headline) profiles first,
    then `paper`, then the others in the suite file's order, then any the file no longer has."""
    listed = list(suite.get("profiles", {}))
    searched = {p for p in listed if (suite["profiles"][p] or {}).get("search")}  # yaml `tuned:` with no body: None

    def key(name):
        if name in searched:
            return (0, listed.index(name), name)
        if name == "paper":
            return (1, 0, name)
        return (2, listed.index(name) if name in listed else len(listed), name)

    return sorted(profiles, key=key)


def protocol_line(suite: dict, name: str, report: SearchReport | None = None) -> str:
    """The profile's protocol in one line (under its section's title)."""
    profile = _profile(suite, name)
    if profile is None:
        return f"{name}: a profile the suite file no longer declares (its protocol is in each run's record)."
    if profile.search is not None:
        studies, trials = (report.studies, report.trials) if report else (profile.search.studies,
                                                                           profile.search.trials)
        return (f"{name}: every architecture trained with the settings a search of {studies} x {trials} trials "
                f"({profile.search.sampler} sampler; {', '.join(profile.search.space)}) chose for it by the "
                "median of studies (the same search for every row); see the search table.")
    train = profile.train
    if profile.recipe:
        source, arch = profile.recipe.get("profile"), profile.recipe.get("arch")
        if isinstance(arch, str):
            return (f"{name}: every row trained with the settings the search of profile {source} chose for "
                    f"{arch} (one recipe, so rows differ in the architecture only; the settings are in 'Held "
                    "fixed' below), not tuned per row.")
        mapped = "".join(f"; {row} takes {own}'s" for row, own in (arch or {}).items())
        return (f"{name}: each row trained with the settings the search of profile {source} chose for its own "
                f"architecture{mapped} (the settings are the row's columns); see that profile's search table.")
    if needs_tuning(profile):
        grid = len(profile.tune.grid) if profile.tune else 0
        recipe = "the paper's recipe" if name == "paper" else "one recipe for every architecture"
        return (f"{name}: {recipe} ({train.optimizer}); learning rate from a {grid}-point grid per architecture, "
                "the same grid for every architecture; see the learning-rate tuning table.")
    length = f"{train.steps} steps" if train.steps else f"up to {train.epochs} epochs"
    return (f"{name}: one fixed recipe for every architecture ({train.optimizer}, lr {_shown(train.lr)}, {length}), "
            "not tuned.")


def protocol_table(table: pd.DataFrame, df: pd.DataFrame, suite: dict, searched: list[str]) -> pd.DataFrame:
    """Each architecture x budget x task setting trained under a searched profile and under
    another profile on the same task settings (the same targets too, where rows aggregate
    over targets): both means with their seeds, and tuned / other."""
    board = suite.get("leaderboard", {})
    aggregate_over = board.get("aggregate_over", [])
    primary = df["primary"].iloc[0]
    higher = bool(df["higher_is_better"].iloc[0])
    # holdout (words: training examples kept back as validation data) changes what a row trains on, not what
    # it is tested on: a tuned row that holds one speaker in five out is paired with the paper's, which does not
    task_columns = sorted(c for c in df.columns if c.startswith("task.") and c.removeprefix("task.") not in
                          [*aggregate_over, "holdout"])
    aggregated = [f"task.{k}" for k in aggregate_over if f"task.{k}" in df]
    ident = ["arch", "offset", "periods", "budget"]

    def key_of(frame: pd.DataFrame) -> pd.Series:
        return frame[[*task_columns, *ident]].agg(lambda row: "|".join(map(str, row)), axis=1)

    def targets_of(profile: str) -> dict:
        runs = df[df["profile"] == profile]
        if not aggregated:
            return {}
        keys = key_of(runs)
        labels = runs[aggregated].agg(lambda row: "|".join(map(str, row)), axis=1)
        return {k: frozenset(labels[keys == k]) for k in keys.unique()}

    rows = []
    table = table[~table["external"]]
    for tuned in searched:
        mine = table[table["profile"] == tuned]
        mine_keys = dict(zip(key_of(mine), mine.index))
        mine_targets = targets_of(tuned)
        for other in profile_order(set(table["profile"]) - set(searched), suite):
            theirs = table[table["profile"] == other]
            their_targets = targets_of(other)
            for k, j in zip(key_of(theirs), theirs.index):
                i = mine_keys.get(k)
                if i is None or mine_targets.get(k) != their_targets.get(k):
                    continue
                a, b = table.at[j, f"_mean.{primary}"], table.at[i, f"_mean.{primary}"]
                ratio = b / a if a and math.isfinite(a) and math.isfinite(b) else float("nan")
                better = ("—" if not math.isfinite(ratio) else "equal" if a == b
                          else tuned if (b > a) == higher else other)
                row = {"arch": table.at[i, "arch"], "budget": table.at[i, "budget"],
                       **{c.removeprefix("task."): table.at[i, c] for c in task_columns if c in table},
                       "reference": other, f"reference {primary}": table.at[j, primary],
                       "reference seeds": len(table.at[j, "_per_seed"]),
                       "tuned profile": tuned, f"tuned {primary}": table.at[i, primary],
                       "tuned seeds": len(table.at[i, "_per_seed"]),
                       "ratio": ratio, "better": better}
                rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):  # task settings every row shares say nothing: the protocol line names them
        frame = frame.drop(columns=[c.removeprefix("task.") for c in task_columns
                                    if c.removeprefix("task.") in frame and frame[c.removeprefix("task.")]
                                    .astype(str).nunique() <= 1])
    return frame
