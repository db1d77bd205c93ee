"""The suite files: `extends`, the defaults they leave out, and every profile of every suite
resolving to the configs that made the committed results.

A run id is a hash of the resolved config, so the committed stores pin the suite files: a
profile that resolved differently (a lost default, an `extends` merged wrong, a task whose
params() changed) would give ids no committed record has, and their runs would be redone.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from bench.suite.search import tuned_settings
from bench.suite.suites import MatchConfig, Profile, load_profile, load_suite, resolve, suite_names
from bench.suite.tuning import TUNING_STORE, choose, needs_tuning, tuning_runs
from models.errors import UserInputError
from tasks.timit.synth import ensure_synthetic_corpus

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
STAND_IN_LR = 0.123  # the rate of an architecture the committed tuning store has not tuned


def committed(task: str, store: str = "runs.jsonl") -> list[dict]:
    path = RESULTS / task / store
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture(scope="module")
def word_data(tmp_path_factory) -> dict:
    """Task params that keep the word tasks' data in a temporary folder: synthwords builds
    its corpus there, and timit reads that same corpus (TIMIT is not shipped) with the
    same feature cache. Neither is in params(): the run ids do not depend on them."""
    cache = tmp_path_factory.mktemp("cache") / "synthwords"
    return {"synthwords": {"cache_dir": str(cache)},
            "timit": {"timit_root": str(ensure_synthetic_corpus(cache)), "cache_dir": str(cache)}}


def tuned_rates(task: str, name: str, profile: Profile) -> dict[str, float]:
    """The rates the committed tuning store chose, for the architectures it tuned; first
    checking that every committed tuning record of the profile is one of its tuning runs."""
    records = [r for r in committed(task, TUNING_STORE) if r["profile"] == name]
    tuned_archs = {r["arch"] for r in records}
    runs = tuning_runs(task, name, dataclasses.replace(profile, archs=sorted(tuned_archs) or profile.archs[:1]))
    assert {r["run_id"] for r in records} <= {config.run_id for config, _ in runs}, (task, name, "tuning")
    chosen = choose(runs, records) if records else {}
    return {label: chosen.get(label, STAND_IN_LR) for label in profile.archs}


def test_every_profile_of_every_suite_resolves_to_the_committed_run_ids(word_data):
    checked = {}
    for task in suite_names():
        suite = load_suite(task)
        for name in suite["profiles"]:
            profile = load_profile(suite, name)
            profile.task_params.update(word_data.get(task, {}))
            tuned = tuned_rates(task, name, profile) if needs_tuning(profile) else None
            if profile.search is not None or profile.recipe:
                tuned = {}
                for label in profile.archs:  # the committed search's choice where it is complete, else the profile's
                    try:
                        tuned[label] = tuned_settings(task, name, dataclasses.replace(profile, archs=[label]),
                                                      RESULTS)[label]
                    except UserInputError:
                        tuned[label] = {}
            ids = {config.run_id for config, _ in resolve(task, name, profile, tuned)}
            settings = math.prod(len(v) for v in profile.task_params.values() if isinstance(v, list))
            assert len(ids) == len(profile.archs) * len(profile.budgets) * profile.seeds * settings  # all distinct
            records = [r for r in committed(task) if r["profile"] == name]
            missing = [r["run_id"] for r in records if r["run_id"] not in ids]
            assert not missing, f"{task} {name}: {len(missing)} committed runs the profile no longer resolves to"
            checked[task] = checked.get(task, 0) + len(records)
    # every committed record belongs to a profile of its suite, and none was skipped
    assert checked == {task: len(committed(task)) for task in suite_names()}
    assert checked["copy"] and checked["audio"] and checked["synthwords"]


def test_synthwords_runs_the_timit_profiles():
    timit, synthwords = load_suite("timit"), load_suite("synthwords")
    assert synthwords["extends"] == "timit" and synthwords["profiles"] == timit["profiles"]
    for name in timit["profiles"]:
        assert load_profile(synthwords, name) == load_profile(timit, name)
    # its own leaderboard: the stand-in corpus never shows TIMIT's paper column
    assert "paper" in timit["leaderboard"] and "paper" not in synthwords["leaderboard"]


def test_profiles_leave_the_match_defaults_out():
    assert (MatchConfig().cw_match, MatchConfig().offset) == ("module_size", 0)
    for task in suite_names():
        for name, profile in load_suite(task)["profiles"].items():
            assert not {"cw_match", "offset"} & set(profile.get("match", {})), (task, name)


def write_suites(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)


BASE = """task: base
profiles:
  quick: {archs: [rnn], budgets: [100], seeds: 1, train: {steps: 5, lr: 0.01}}
  paper: {archs: [lstm], budgets: [200], seeds: 2}
"""


def test_extends_merges_profiles_key_by_key(tmp_path, monkeypatch):
    write_suites(tmp_path / "suites", {"base": BASE, "child": """task: child
extends: base
title: its own
profiles:
  quick: {archs: [gru, lstm], train: {lr: 0.5}}
  long: {archs: [rnn], budgets: [300], seeds: 3}
""", "grandchild": "task: grandchild\nextends: child\nprofiles: {quick: {seeds: 4}}\n"})
    monkeypatch.setattr("bench.suite.suites.SUITES_DIR", tmp_path / "suites")
    child = load_suite("child")
    assert child["title"] == "its own" and list(child["profiles"]) == ["quick", "paper", "long"]
    quick = load_profile(child, "quick")
    assert quick.archs == ["gru", "lstm"]  # a list replaces the parent's
    assert (quick.budgets, quick.train.steps, quick.train.lr) == ([100], 5, 0.5)  # a mapping merges
    assert load_profile(child, "paper") == load_profile(load_suite("base"), "paper")
    assert load_profile(load_suite("grandchild"), "quick") == dataclasses.replace(quick, seeds=4)
    assert load_suite("base")["profiles"]["quick"]["archs"] == ["rnn"]  # the parent is left as it was


@pytest.mark.parametrize("files, words", [
    ({"child": "task: child\nextends: nosuch\n"}, ["bench/suites/child.yaml", "unknown suite 'nosuch'", "child"]),
    ({"a": "task: a\nextends: b\n", "b": "task: b\nextends: a\n"}, ["a -> b -> a", "remove one `extends`"]),
    ({"a": "task: a\nextends: a\n"}, ["a -> a"]),
])
def test_a_bad_extends_is_one_line(tmp_path, monkeypatch, files, words):
    write_suites(tmp_path / "suites", files)
    monkeypatch.setattr("bench.suite.suites.SUITES_DIR", tmp_path / "suites")
    with pytest.raises(UserInputError) as info:
        load_suite(sorted(files)[0])
    assert "\n" not in str(info.value) and all(word in str(info.value) for word in words), str(info.value)
