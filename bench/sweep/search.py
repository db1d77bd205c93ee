"""`cwbench tune TASK --profile P` for a profile with a search (bench/suite/search.py): the
trials' runs go through the sweep round by round (one round for random search) until every
trial has its score, then each architecture's choice is said.
"""

from __future__ import annotations

from pathlib import Path

from bench.store.results import ResultsStore
from bench.suite.search import chosen_trials, pending_runs, replay
from bench.suite.suites import Profile
from bench.suite.tuning import TUNING_STORE
from bench.sweep.runner import run_suite


def run_search(task_name: str, profile_name: str, profile: Profile, results_dir: Path, options_for,
               log=print) -> int:
    """`cwbench tune TASK --profile P` for a profile with a search: train the trials' runs round by
    round (one round for random search) through the sweep (`options_for(runs)` gives its
    SweepOptions), until every trial is scored; then say each architecture's choice. Returns the
    exit status: 1 where runs failed or another sweep still trains some."""
    store = ResultsStore(Path(results_dir) / task_name / TUNING_STORE)
    search = profile.search
    log(f"search: {len(profile.archs)} architectures x {search.studies} studies x {search.trials} trials "
        f"({search.sampler} sampler), each trial {search.seeds} seed(s) per tuning setting at budget "
        f"{search.budget or max(profile.budgets)}")
    while True:
        records = store.load() if store.path.exists() else []
        trials = replay(task_name, profile_name, profile, records)
        pending = pending_runs(trials, records)
        if not pending:
            break
        counts = run_suite(pending, results_dir, options_for(pending), log=log)
        if counts.get("failed") or counts.get("not stored"):
            log(f"error: {counts.get('failed', 0) + counts.get('not stored', 0)} tuning runs failed or were not "
                "stored (their reasons are above): fix the cause, then rerun the same command")
            return 1
        if not any(counts.get(status) for status in ("ok", "diverged")):
            log(f"error: {len(pending)} runs of this round are being trained by another sweep on the same store: "
                "rerun this command when it has finished, and the search goes on from there")
            return 1
    higher = next((r["higher_is_better"] for r in records), False)
    for arch, trial in chosen_trials(trials, profile, higher).items():
        shown = ", ".join(f"{k}={_shown(v)}" for k, v in trial.settings.items())
        log(f"chosen: {arch} {shown} (study {trial.study}, trial {trial.number}: validation score "
            f"{trial.score:.4g})")
    return 0


def _shown(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
