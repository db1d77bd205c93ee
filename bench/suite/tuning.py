"""Learning-rate tuning, part of a profile's protocol (`cwbench tune TASK --profile P`).

Every architecture gets the same effort: the profile's `tune` section fixes one grid of
learning rates, the seeds and the budget, and each (architecture, learning rate, seed)
is one run stored in results/<task>/tuning.jsonl (the same store, so the same atomic
writes and resuming as runs.jsonl). A run is scored on the final *validation* metric of
`task.for_tuning()`, never on the test set. The chosen rate of an architecture is the one
with the best mean score over seeds (and over the tuning task settings); a diverged run
scores the task's trivial baseline. Like the paper, the rate is tuned at one size and
kept across sizes. A profile whose train.lr is "tuned" then reads the choice from the
store: nothing is chosen by hand.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

from bench.store.results import ResultsStore
from bench.suite.suites import TUNED, Profile, resolve
from models.errors import UserInputError

if TYPE_CHECKING:
    import pandas as pd

TUNING_STORE = "tuning.jsonl"


def needs_tuning(profile: Profile) -> bool:
    return profile.train.lr == TUNED or any(o.get("lr") == TUNED for o in profile.arch_train.values())


def tuning_runs(task_name: str, profile_name: str, profile: Profile) -> list[tuple[dict, object]]:
    """Every tuning run of the profile's architectures, as (config, task) pairs."""
    tune = profile.tune
    if tune is None or not tune.grid:
        raise UserInputError(f"profile {profile_name} of task {task_name} has no `tune` grid: "
                             f"add one under profiles.{profile_name}.tune in bench/suites/{task_name}.yaml")
    if any(isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 for lr in tune.grid):
        raise UserInputError(f"bad tune.grid {tune.grid} in profile {profile_name}: give positive learning rates")
    base = dataclasses.replace(
        profile, budgets=[tune.budget or profile.budgets[0]], seeds=tune.seeds,
        task_params={**profile.task_params, **tune.task_params},
        # every architecture gets the same grid: no per-architecture learning rate survives
        arch_train={arch: {k: v for k, v in o.items() if k != "lr"} for arch, o in profile.arch_train.items()},
    )
    runs = []
    for lr in tune.grid:
        train = dataclasses.replace(profile.train, lr=float(lr), steps=tune.steps or profile.train.steps)
        for config, task in resolve(task_name, profile_name, dataclasses.replace(base, train=train)):
            tuning_task = task.for_tuning()
            runs.append((dataclasses.replace(config, task_params=tuning_task.params(), tuning=True), tuning_task))
    return runs


def _score(record: dict) -> float:
    if record["status"] == "ok":
        return record["metrics"][record["primary_metric"]]
    return record["baselines"].get(record["primary_metric"], math.nan)  # diverged: the trivial baseline


def choose(runs, records: list[dict]) -> dict[str, float]:
    """The chosen learning rate per architecture label, from the stored runs of the plan."""
    by_id = {r["run_id"]: r for r in records if r.get("status") in ("ok", "diverged")}
    scores: dict[str, dict[float, list[float]]] = {}
    missing: dict[str, int] = {}
    higher = None
    for config, _ in runs:
        record = by_id.get(config.run_id)
        if record is None:
            missing[config.arch] = missing.get(config.arch, 0) + 1
            continue
        higher = record["higher_is_better"]
        scores.setdefault(config.arch, {}).setdefault(config.train["lr"], []).append(_score(record))
    if missing:
        raise UserInputError(
            "learning-rate tuning is not complete ("
            + ", ".join(f"{arch}: {n} runs missing" for arch, n in missing.items())
            + f"): run `cwbench tune {runs[0][0].task} --profile {runs[0][0].profile}` first "
            "(with the same --archs, --results and --param as this command)")
    sign = -1 if higher else 1
    chosen = {}
    for arch, by_lr in scores.items():
        means = {lr: sum(v) / len(v) for lr, v in by_lr.items()}
        # the best mean; ties go to the smaller rate (the grid is sorted)
        chosen[arch] = min(sorted(means), key=lambda lr: sign * means[lr] if not math.isnan(means[lr]) else math.inf)
    return chosen


def tuned_rates(task_name: str, profile_name: str, profile: Profile, results_dir: Path) -> dict[str, float]:
    runs = tuning_runs(task_name, profile_name, profile)
    return choose(runs, ResultsStore(Path(results_dir) / task_name / TUNING_STORE).load())


def tuning_table(records: list[dict], used: dict[str, set[float]]) -> pd.DataFrame:
    """One row per (architecture, learning rate) of a profile's tuning runs: the score
    (mean ± std of the final validation metric over seeds and settings; a diverged run
    counted at the trivial baseline), n, diverged, and whether the profile's runs use it."""
    import pandas as pd

    rows = {}
    for r in records:
        if r.get("status") not in ("ok", "diverged"):
            continue
        row = rows.setdefault((r["arch"], r["train"]["lr"]), {"scores": [], "diverged": 0, "budget": r["budget"]})
        row["scores"].append(_score(r))
        row["diverged"] += r["status"] == "diverged"
    table = []
    for (arch, lr), row in sorted(rows.items()):
        scores = pd.Series(row["scores"], dtype=float)
        spread = f" ± {scores.std(ddof=1):.2g}" if len(scores) > 1 else ""
        table.append({"arch": arch, "lr": f"{lr:g}", "budget": row["budget"],
                      "validation score": f"{scores.mean():.4g}{spread}", "n": len(scores),
                      "diverged": row["diverged"], "chosen": "✓" if lr in used.get(arch, set()) else ""})
    return pd.DataFrame(table)
