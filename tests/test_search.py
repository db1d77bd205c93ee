"""The tuned protocol's search (bench/suite/search.py): the same trials for every architecture,
rebuilt from the store, tuning data apart from test data, the median-of-studies choice, and
`run --profile tuned` refusing until the search is complete."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from bench.cli import main
from bench.suite import search
from bench.suite.searchspace import read_search
from bench.suite.suites import load_profile, load_suite, resolve
from models.errors import UserInputError


def tuned(task: str, archs: list[str], **changes):
    profile = load_profile(load_suite(task), "tuned")
    profile.archs = archs
    profile.search = dataclasses.replace(profile.search, **changes)
    return profile


def fake_records(trials, score_of) -> list[dict]:
    """Stored records for the trials' runs, each scoring score_of(trial) (a string: diverged)."""
    records = []
    for trial in trials:
        for config, task in trial.runs:
            value = score_of(trial)
            ok = not isinstance(value, str)
            records.append(
                {
                    **config.to_dict(),
                    "run_id": config.run_id,
                    "status": "ok" if ok else "diverged",
                    "primary_metric": task.primary_metric,
                    "higher_is_better": task.higher_is_better,
                    "metrics": {task.primary_metric: value} if ok else {},
                    "baselines": task.baselines(),
                }
            )
    return records


def test_every_architecture_gets_the_same_trials_and_the_same_draws():
    profile = tuned("copy", ["lstm", "rnn", "cwrnn/exponential"], trials=5, studies=2)
    trials = search.replay("copy", "tuned", profile, [])
    for arch in profile.archs:
        assert sorted((t.study, t.number) for t in trials if t.arch == arch) == [
            (s, k) for s in range(2) for k in range(5)
        ]
    # the same sampler seed per study: every architecture's study draws the same learning rates
    lrs = {arch: [t.settings["lr"] for t in trials if t.arch == arch] for arch in profile.archs}
    assert lrs["lstm"] == lrs["rnn"] == lrs["cwrnn/exponential"]
    assert lrs["lstm"][:5] != lrs["lstm"][5:]  # two studies, two seeds
    low, high = profile.search.space["lr"]["log_uniform"]
    assert all(low <= lr <= high for lr in lrs["lstm"])
    # a replay in another process (here: again) asks the same trials, so the store is the study
    again = search.replay("copy", "tuned", profile, [])
    assert [t.settings for t in again] == [t.settings for t in trials]
    assert [c.run_id for t in again for c, _ in t.runs] == [c.run_id for t in trials for c, _ in t.runs]


def test_tuning_runs_never_see_test_data_or_final_seeds():
    profile = tuned("audio", ["cwrnn/exponential"], trials=2, studies=2)
    trials = search.replay("audio", "tuned", profile, [])
    targets = {config.task_params["target"] for t in trials for config, _ in t.runs}
    assert targets == {"synth:reed", "synth:marimba"}
    assert not targets & set(profile.task_params["target"])
    finals = resolve("audio", "tuned", profile, {"cwrnn/exponential": dict(trials[0].settings)})
    assert {c.seed for t in trials for c, _ in t.runs}.isdisjoint({c.seed for c, _ in finals})
    assert all(c.tuning and (c.trial["study"], c.trial["number"]) == (t.study, t.number)
               for t in trials for c, _ in t.runs)
    assert {c.budget for t in trials for c, _ in t.runs} == {max(profile.budgets)}
    # copy: its validation stream, never the test sequences
    copy_trials = search.replay("copy", "tuned", tuned("copy", ["lstm"], trials=1, studies=1), [])
    ((config, task),) = copy_trials[0].runs
    assert task.for_tuning() is task or task.for_tuning().params() == config.task_params


def test_scores_and_the_median_of_studies_choice():
    profile = tuned("copy", ["lstm"], trials=3, studies=3)
    trials = search.replay("copy", "tuned", profile, [])
    # recall accuracy (higher is better): study s's trial k scores 0.1 * (s + 1) + 0.01 * k
    records = fake_records(trials, lambda t: 0.1 * (t.study + 1) + 0.01 * t.number)
    scored = search.replay("copy", "tuned", profile, records)
    assert all(t.score == pytest.approx(0.1 * (t.study + 1) + 0.01 * t.number) for t in scored)
    choice = search.chosen_trials(scored, profile, higher_is_better=True)["lstm"]
    assert (choice.study, choice.number) == (1, 2)  # each study's best is trial 2; the middle study is 1
    two = tuned("copy", ["lstm"], trials=3, studies=2)
    scored_two = search.replay(
        "copy",
        "tuned",
        two,
        fake_records(search.replay("copy", "tuned", two, []), lambda t: 0.1 * (t.study + 1) + 0.01 * t.number),
    )
    # an even number of studies: the worse of the middle two, so a lucky study does not decide
    assert search.chosen_trials(scored_two, two, higher_is_better=True)["lstm"].study == 0


def test_a_diverged_run_scores_the_trivial_baseline():
    profile = tuned("copy", ["lstm"], trials=2, studies=1)
    trials = search.replay("copy", "tuned", profile, [])
    records = fake_records(trials, lambda t: "diverged" if t.number == 0 else 0.5)
    scored = search.replay("copy", "tuned", profile, records)
    assert [(t.score, t.diverged) for t in scored] == [(0.125, 1), (0.5, 0)]


def test_an_incomplete_search_is_resumed_and_refuses_a_choice():
    profile = tuned("copy", ["lstm", "gru"], trials=2, studies=2)
    trials = search.replay("copy", "tuned", profile, [])
    half = fake_records([t for t in trials if t.arch == "lstm"], lambda t: 0.3)
    again = search.replay("copy", "tuned", profile, half)
    pending = search.pending_runs(again, half)
    assert {c.arch for c, _ in pending} == {"gru"} and len(pending) == 4
    with pytest.raises(UserInputError, match=r"gru: 4 trials to go.*cwbench tune"):
        search.chosen_trials(again, profile, higher_is_better=True)


def test_tpe_asks_the_next_round_only_once_the_last_is_told():
    profile = tuned("copy", ["lstm"], trials=4, studies=1, sampler="tpe", batch=2)
    first = search.replay("copy", "tuned", profile, [])
    assert [t.number for t in first] == [0, 1]
    records = fake_records(first, lambda t: 0.2 + 0.1 * t.number)
    second = search.replay("copy", "tuned", profile, records)
    assert [t.number for t in second] == [0, 1, 2, 3]
    assert [t.settings for t in second[:2]] == [t.settings for t in first]


@pytest.mark.parametrize(
    "space, message",
    [
        ({"lr": {"log_uniform": [0, 1]}}, "LOW > 0"),
        ({"lr": {"uniform": [1, 0]}}, "LOW < HIGH"),
        ({"nonsense": {"choice": [1]}}, "not a training setting"),
        ({"lr": [1, 2]}, "write it as one of"),
        ({"clip": {"family": True}}, "only init"),
    ],
)
def test_a_bad_search_space_is_refused_in_one_line(space, message):
    with pytest.raises(UserInputError, match=message):
        read_search({"space": space}, "profile tuned search", {"lr", "clip", "init"})


def test_tune_then_run_through_the_command_line(tmp_path, capsys):
    results = tmp_path / "results"
    common = [
        "copy",
        "--profile",
        "tuned",
        "--archs",
        "lstm",
        "rnn",
        "--steps",
        "4",
        "--trials",
        "2",
        "--studies",
        "1",
        "--results",
        str(results),
        "--workers",
        "1",
    ]
    assert main(["run", *common, "--seeds", "1"]) == 2  # refused while there is no search to read
    assert "run `cwbench tune copy --profile tuned` first" in capsys.readouterr().err
    assert main(["tune", *common]) == 0
    out = capsys.readouterr().out
    assert out.count("chosen: ") == 2
    records = [json.loads(line) for line in (results / "copy" / "tuning.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["tuning"] and r["evaluated_on"] == "val" for r in records)
    assert all(r["train"]["steps"] == 4 and r["train"]["select"] == "best_val" for r in records)
    assert main(["run", *common, "--seeds", "1"]) == 0
    runs = [json.loads(line) for line in (results / "copy" / "runs.jsonl").read_text().splitlines()]
    chosen = {line.split()[1]: line for line in out.splitlines() if line.startswith("chosen: ")}
    for run in runs:
        assert f"lr={run['train']['lr']:.3g}" in chosen[run["arch"]]
        assert math.isfinite(run["metrics"]["recall_accuracy"]) and "selected_step" in run


def test_a_recipe_profile_trains_every_variant_with_what_the_search_chose_for_one(tmp_path):
    from bench.suite.suites import Profile

    profile = tuned("copy", ["lstm"])  # the committed search: the recipe reads the suite file's profile
    trials = search.replay("copy", "tuned", profile, [])
    store = tmp_path / "copy" / "tuning.jsonl"
    store.parent.mkdir()
    store.write_text("".join(json.dumps(r) + "\n" for r in fake_records(trials, lambda t: 0.2 + 0.01 * t.number)))
    best = search.chosen_trials(
        search.replay("copy", "tuned", profile, fake_records(trials, lambda t: 0.2 + 0.01 * t.number)),
        profile,
        higher_is_better=True,
    )["lstm"]
    family = Profile(
        archs=["cwrnn/exponential", "cwrnn/dense"],
        budgets=[10000],
        seeds=1,
        task_params={"delay": 100},
        match=profile.match,
        train=profile.train,
        recipe={"profile": "tuned", "arch": "lstm"},
    )
    settings = search.tuned_settings("copy", "schedules", family, tmp_path)
    assert best.number == profile.search.trials - 1
    assert settings == {"cwrnn/exponential": best.settings, "cwrnn/dense": best.settings}
    runs = resolve("copy", "schedules", family, settings)
    assert all(c.train["lr"] == best.settings["lr"] for c, _ in runs)
    with pytest.raises(UserInputError, match="recipe the search of profile tuned chose for lstm"):
        search.tuned_settings("copy", "schedules", family, tmp_path / "empty")


def test_a_recipe_profile_without_arch_trains_each_row_with_its_own_architectures_choice(tmp_path):
    """The copy `long` profile's form: each row the recipe its own architecture's search chose;
    a row the search did not tune is mapped to one it did, or refused with the mapping to write."""
    from bench.suite.suites import Profile

    profile = tuned("copy", ["lstm", "gru"])
    trials = search.replay("copy", "tuned", profile, [])
    records = fake_records(trials, lambda t: 0.5 + (0.01 if t.arch == "lstm" else -0.01) * t.number)  # opposite picks
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "tuning.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    best = search.chosen_trials(search.replay("copy", "tuned", profile, records), profile, higher_is_better=True)
    assert best["lstm"].settings != best["gru"].settings  # else the test could not tell the rows apart
    rows = Profile(archs=["lstm", "gru", "cwrnn/exponential:3"], budgets=[10000], seeds=1,
                   task_params={"delay": 200}, match=profile.match, train=profile.train,
                   recipe={"profile": "tuned", "arch": {"cwrnn/exponential:3": "lstm"}})
    settings = search.tuned_settings("copy", "long", rows, tmp_path)
    assert settings == {"lstm": best["lstm"].settings, "gru": best["gru"].settings,
                        "cwrnn/exponential:3": best["lstm"].settings}
    runs = resolve("copy", "long", rows, settings)
    assert {c.arch: c.train["lr"] for c, _ in runs} == {"lstm": best["lstm"].settings["lr"],
                                                       "gru": best["gru"].settings["lr"],
                                                       "cwrnn/exponential:3": best["lstm"].settings["lr"]}
    rows.recipe = {"profile": "tuned"}
    with pytest.raises(UserInputError, match=r"tunes no cwrnn/exponential:3: map such a row .* arch: \{ROW: "):
        search.tuned_settings("copy", "long", rows, tmp_path)
    rows.recipe = {"profile": "tuned", "archs": "lstm"}
    with pytest.raises(UserInputError, match=r"bad bench/suites/copy.yaml profile long recipe .* write \{profile: "):
        search.tuned_settings("copy", "long", rows, tmp_path)


def test_the_protocol_line_of_a_per_row_recipe_says_whose_choice_each_row_takes():
    from bench.report.tuned import protocol_line
    from bench.suite.suites import load_suite

    suite = load_suite("copy")
    suite["profiles"]["long"]["recipe"] = {"profile": "tuned", "arch": {"cwrnn/exponential:3": "cwrnn/exponential"}}
    line = protocol_line(suite, "long")
    assert "chose for its own architecture; cwrnn/exponential:3 takes cwrnn/exponential's" in line


def test_the_choice_reads_from_the_store_alone_and_a_changed_sampler_is_said():
    profile = tuned("copy", ["lstm"], trials=3, studies=1)
    trials = search.replay("copy", "tuned", profile, [])
    records = fake_records(trials, lambda t: 0.2 + 0.01 * t.number)
    stored = search.stored_trials("tuned", profile, records)
    assert [(t.number, t.settings, t.score) for t in stored] == [
        (t.number, t.settings, t.score) for t in search.replay("copy", "tuned", profile, records)]
    # a search with another space is another search: its records are not this one's trials
    other = dataclasses.replace(profile, search=dataclasses.replace(profile.search, seed_offset=5000))
    assert search.stored_trials("tuned", other, records) == []
    # a store whose trial 1 says other settings than this Optuna asks (another version's sampler)
    changed = [dict(r, train={**r["train"], "lr": 0.5}) if r["trial"]["number"] == 1 else r for r in records]
    with pytest.raises(UserInputError, match="install that version to go on with it"):
        search.replay("copy", "tuned", profile, changed)
