"""The reports of the tuned protocol, from a hand-made store of the copy task: the searched
profile's section first, the search table and its choice by the median of studies, the
sentence for an architecture that learned in no trial, the protocol table and its ratio,
search_tuned.json / trials_tuned.csv / the expected-best csv, the memoryless references per
row, the site; and Dodge's expected-best estimator against brute force."""

import hashlib
import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from bench.report import site
from bench.report.leaderboard import build_leaderboard
from bench.report.stats import expected_best
from bench.report.tuned import profile_order
from bench.suite.suites import load_suite

D100 = {"delay": 100, "variable_delay": False, "min_delay": 100, "eval_sequences": 64}
D10 = {"delay": 10, "variable_delay": False, "min_delay": 5, "eval_sequences": 64}
SETTINGS = [  # trial number -> its searched settings (random search: every architecture gets the same draws)
    {"lr": 0.002, "clip": 0.25, "init_std": 0.05, "learn_h0": True},
    {"lr": 0.0005, "clip": 1.0, "init_std": 0.0},
    {"lr": 0.008, "clip": 4.0, "init_std": 0.2, "learn_h0": True},
]
# lstm: study 0's best is trial 1 (0.9), study 1's trial 0 (0.6); the median of two studies is the worse
SCORES = {"lstm": [[0.5, 0.9, 0.2], [0.6, 0.3, 0.4]], "rnn": [[0.12, 0.13, 0.11], [0.125, 0.12, 0.1]]}


def ce_per_step(delay):
    return 10 * math.log(8) / (delay + 20)


def record(arch, seed, value, profile, task_params, train=None, learned=True, **extra):
    r = {
        "run_id": hashlib.sha256(repr((arch, seed, profile, task_params, train, extra)).encode()).hexdigest()[:16],
        "task": "copy", "profile": profile, "task_params": task_params, "arch": arch,
        "model": {"arch": arch, "hidden_size": 4, "schedule": "", "periods": [], "module_sizes": [], "offset": 0,
                  "order": []},
        "budget": 10000, "params": 10000, "effective_params": 10000, "seed": seed, "status": "ok", "reason": "",
        "train": {"steps": 30, "batch_size": 64, "optimizer": "adam", "lr": 0.001, "clip": 1.0, "init_std": 0.0,
                  **(train or {})},
        "metrics": {"recall_accuracy": value, "ce": 2.0}, "curve": [{"step": 30, "val/recall_accuracy": value}],
        "artifacts": {}, "backend": "torch", "sources": {},
        "baselines": {"recall_accuracy": 0.125, "ce": math.log(8),
                      "ce_per_step_whole_sequence": ce_per_step(task_params["delay"])},
        "primary_metric": "recall_accuracy", "higher_is_better": True, "wall_time_s": 1.0, "device": "cpu",
        "git_commit": "0123456789abcdef0123456789abcdef01234567", "versions": {"torch": "2.13.0"},
        "date": "2026-01-01T00:00:00+00:00", "command": f"cwbench run copy --profile {profile}", "learned": learned,
    }
    r.update(extra)
    return r


def chosen_train(arch):
    # rnn: study 0's best is trial 1 (0.13), study 1's trial 0 (0.125): the same trial as lstm's
    return SETTINGS[0] | {"select": "best_val"}


def store_records():
    tuning = [record(arch, 1000 + 100 * study, score, "tuned", D100, SETTINGS[number] | {"select": "best_val"},
                     learned=score > 0.15, tuning=True, evaluated_on="val", trial={"study": study, "number": number})
              for arch, studies in SCORES.items() for study, scores in enumerate(studies)
              for number, score in enumerate(scores)]
    runs = [record("lstm", s, v, "tuned", D100, chosen_train("lstm")) for s, v in enumerate([0.5, 0.6])]
    runs += [record("rnn", s, v, "tuned", D100, chosen_train("rnn"), learned=False) for s, v in enumerate([0.12, 0.13])]
    runs += [record("lstm", s, v, "standard", D100) for s, v in enumerate([0.2, 0.3, 0.25])]
    runs += [record("rnn", s, v, "standard", D100, learned=False) for s, v in enumerate([0.12, 0.125, 0.13])]
    runs += [record("lstm", s, v, "quick", D10) for s, v in enumerate([0.9, 0.95])]
    return runs, tuning


@pytest.fixture
def built(tmp_path):
    results = tmp_path / "results"
    folder = results / "copy"
    folder.mkdir(parents=True)
    runs, tuning = store_records()
    (folder / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    (folder / "tuning.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tuning))
    build_leaderboard("copy", results, log=lambda *a: None)
    return results, folder


def sections(md):
    return [line for line in md.splitlines() if line.startswith("## ")]


def test_the_tuned_profile_comes_first_and_every_profile_says_its_protocol(built):
    _, folder = built
    md = (folder / "leaderboard.md").read_text()
    profiles = [s for s in sections(md) if s.startswith("## Profile")]
    assert profiles == ["## Profile `tuned`", "## Profile `quick`", "## Profile `standard`"]
    assert "Protocol — tuned: every architecture trained with the settings a search of 2 x 3 trials" in md
    assert "Protocol — standard: one fixed recipe for every architecture (adam, lr 0.001, 3000 steps), not tuned." in md
    # the audio suite: tuned, then the paper's recipe, then the rest; the paper's protocol says its grid
    assert profile_order(["quick", "paper", "tuned"], load_suite("audio")) == ["tuned", "paper", "quick"]
    from bench.report.tuned import protocol_line
    assert protocol_line(load_suite("audio"), "paper").startswith(
        "paper: the paper's recipe (sgd); learning rate from a 7-point grid")


def test_search_table_chooses_by_the_median_of_studies_and_shows_a_search_that_never_learned(built):
    _, folder = built
    md = (folder / "leaderboard.md").read_text()
    search = md[md.index("### Search"):md.index("## Profile `quick`")]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in search.splitlines() if line.startswith("| ") and not line.startswith("| arch")}
    header = next(line for line in search.splitlines() if line.startswith("| arch"))
    header = [c.strip() for c in header.split("|")[1:-1]]
    lstm = dict(zip(header, rows["lstm"]))
    assert lstm["trials"] == "6 of 2 x 3" and dict(zip(header, rows["rnn"]))["trials"] == "6 of 2 x 3"
    assert lstm["chosen trial"] == "study 1, trial 0" and lstm["lr"] == "0.002" and lstm["learn_h0"] == "True"
    assert lstm["chosen recall_accuracy"] == "0.6" and lstm["best recall_accuracy"] == "0.9"
    assert lstm["median recall_accuracy"] == "0.45" and lstm["trials learned"] == "6"
    assert "rnn: none of its 6 trials learned (best validation recall_accuracy 0.13)" in search
    assert "lstm: none of its" not in search
    assert "the suite file declares 2 x 4" in search  # the store's search is smaller than the suite file's
    assert "not this search's choice" not in search  # the runs trained what the search chose


def test_runs_that_did_not_train_the_choice_are_named(tmp_path):
    results = tmp_path / "results"
    (results / "copy").mkdir(parents=True)
    runs, tuning = store_records()
    runs = [r | {"train": r["train"] | {"lr": 0.1}} if r["profile"] == "tuned" and r["arch"] == "lstm" else r
            for r in runs]
    (results / "copy" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    (results / "copy" / "tuning.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tuning))
    build_leaderboard("copy", results, log=lambda *a: None)
    assert "lstm: the profile's runs trained lr=0.1" in (results / "copy" / "leaderboard.md").read_text()


def test_an_unfinished_search_says_so_and_chooses_nothing_for_the_unfinished_architecture(tmp_path):
    results = tmp_path / "results"
    (results / "copy").mkdir(parents=True)
    runs, tuning = store_records()
    tuning = [r for r in tuning if not (r["arch"] == "rnn" and r["trial"] == {"study": 1, "number": 2})]
    (results / "copy" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    (results / "copy" / "tuning.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tuning))
    build_leaderboard("copy", results, log=lambda *a: None)
    md = (results / "copy" / "leaderboard.md").read_text()
    assert "rnn: no trial chosen: 5 of 2 x 3 trials complete." in md
    assert "have not completed the same number of trials (rnn 5, lstm 6)" in md
    search = json.loads((results / "copy" / "search_tuned.json").read_text())
    assert search["architectures"]["rnn"]["chosen"] is None and search["architectures"]["lstm"]["chosen"]


def test_protocol_table_pairs_same_settings_and_gives_the_ratio(built):
    _, folder = built
    protocol = pd.read_csv(folder / "protocol.csv")
    assert list(protocol["reference"]) == ["standard", "standard"]  # quick ran delay 10: not comparable
    lstm = protocol[protocol["arch"] == "lstm"].iloc[0]
    assert lstm["ratio"] == pytest.approx(0.55 / 0.25)
    assert lstm["better"] == "tuned" and lstm["tuned seeds"] == 2 and lstm["reference seeds"] == 3
    rnn = protocol[protocol["arch"] == "rnn"].iloc[0]
    assert rnn["ratio"] == pytest.approx(0.125 / 0.125) and rnn["better"] == "equal"
    md = (folder / "leaderboard.md").read_text()
    assert "## Protocol: tuned against the other recipes" in md and "a ratio above 1 means the tuned" in md


def test_search_json_trials_csv_and_expected_best_csv(built):
    _, folder = built
    search = json.loads((folder / "search_tuned.json").read_text())
    assert search["declared"]["studies"] == 2 and search["declared"]["trials"] == 4
    assert search["declared"]["sampler"] == "random" and "lr" in search["declared"]["space"]
    assert search["stored"]["studies"] == 2 and search["stored"]["trials_per_study"] == 3
    assert search["stored"]["tuning_data"] == [D100]
    lstm = search["architectures"]["lstm"]
    assert lstm["chosen"] == {"settings": {"lr": 0.002, "clip": 0.25, "init_std": 0.05, "init": "default",
                                           "learn_h0": True}, "study": 1, "trial": 0, "score": 0.6}
    assert lstm["trials_completed"] == 6
    trials = pd.read_csv(folder / "trials_tuned.csv")
    assert len(trials) == 12 and list(trials.columns[:8]) == ["arch", "study", "number", "lr", "clip", "init_std",
                                                               "init", "learn_h0"]
    chosen = trials[trials["chosen"]]
    assert sorted(zip(chosen["arch"], chosen["study"], chosen["number"])) == [("lstm", 1, 0), ("rnn", 1, 0)]
    assert trials.loc[(trials["arch"] == "lstm") & (trials["study"] == 0) & (trials["number"] == 1), "score"].item() \
        == pytest.approx(0.9)
    best = pd.read_csv(folder / "expected_best_vs_trials_tuned.csv")
    lstm_curve = best[best["arch"] == "lstm"]
    assert list(lstm_curve["trials"]) == [1, 2, 3, 4, 5, 6]
    assert lstm_curve["expected_best"].iloc[0] == pytest.approx(np.mean(sum(SCORES["lstm"], [])))
    assert lstm_curve["expected_best"].is_monotonic_increasing  # recall: higher is better
    assert (folder / "expected_best_vs_trials_tuned.png").is_file()


def test_copy_rows_print_their_memoryless_references(built):
    _, folder = built
    md = (folder / "leaderboard.md").read_text()
    quick = md[md.index("## Profile `quick`"):md.index("## Profile `standard`")]
    standard = md[md.index("## Profile `standard`"):]
    assert f"{ce_per_step(10):.4g}" in quick and f"{ce_per_step(100):.4g}" not in quick
    assert f"{ce_per_step(100):.4g}" in standard and "baseline_ce_per_step_whole_sequence" in standard
    board = pd.read_csv(folder / "leaderboard.csv")
    by_profile = board.groupby("profile")["baseline_ce_per_step_whole_sequence"].first()
    assert by_profile["quick"] == pytest.approx(ce_per_step(10), rel=1e-3)
    assert by_profile["tuned"] == pytest.approx(ce_per_step(100), rel=1e-3)


def test_the_site_shows_the_tuned_profile_first_with_its_search(built, tmp_path):
    results, _ = built
    out = tmp_path / "site"
    site.build_site(results, out, log=lambda *a: None)
    page = (out / "copy" / "index.html").read_text()
    assert page.index("Profile <code>tuned</code>") < page.index("Profile <code>quick</code>") \
        < page.index("Profile <code>standard</code>")
    assert 'id="search-tuned"' in page and "none of its 6 trials learned" in page
    assert 'id="protocol"' in page and "Protocol — tuned: every architecture" in page
    assert "baseline_ce_per_step_whole_sequence" in page
    rows = [p.read_text() for p in (out / "copy" / "rows").glob("tuned-lstm-*.html")]
    assert rows and "Searched by" in rows[0] and "study 1, trial 0" in rows[0]


# ---------------------------------------------------------------- Dodge et al.'s estimator

def brute_force(scores, n, higher):
    """Mean and std of the best of n draws with replacement, over all N^n equally likely draws."""
    best = [max(d) if higher else min(d) for d in itertools.product(scores, repeat=n)]
    return np.mean(best), np.std(best)


@pytest.mark.parametrize("higher", [True, False])
@pytest.mark.parametrize("scores", [[0.3, 0.1, 0.7, 0.7, 0.2], [1.0, 0.98, 5.0, 0.5], [2.0]])
def test_expected_best_is_exact_against_enumerating_every_draw(scores, higher):
    means, stds = expected_best(scores, n_max=4, higher_is_better=higher)
    for n in range(1, 5):
        mean, std = brute_force(scores, n, higher)
        assert means[n - 1] == pytest.approx(mean, rel=1e-12, abs=1e-12)
        assert stds[n - 1] == pytest.approx(std, rel=1e-9, abs=1e-9)


def test_expected_best_starts_at_the_mean_and_runs_to_the_best():
    scores = [0.4, 0.1, 0.9, 0.3]
    means, _ = expected_best(scores, n_max=200, higher_is_better=False)
    assert len(expected_best(scores)[0]) == 4  # default: n = 1..N
    assert means[0] == pytest.approx(np.mean(scores))
    assert np.all(np.diff(means) <= 1e-12) and means[-1] == pytest.approx(0.1, abs=1e-6)
    with pytest.raises(ValueError):
        expected_best([float("nan")])


def test_through_the_commands_the_report_agrees_with_the_search(tmp_path, capsys):
    """`cwbench tune` then `cwbench run` on the copy task's tuned profile, a few steps: the
    report's choice is the one the search printed and the runs trained."""
    from bench.cli import main

    args = ["copy", "--profile", "tuned", "--archs", "rnn", "lstm", "--results", str(tmp_path), "--steps", "2",
            "--trials", "2", "--studies", "1", "--param", "delay=5", "--param", "min_delay=5", "--param",
            "eval_batches=1", "--workers", "1", "--threads", "1", "--allow-dirty"]
    assert main(["tune", *args]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("chosen: ")]
    assert main(["run", *args, "--seeds", "1"]) == 0
    folder = tmp_path / "copy"
    search = json.loads((folder / "search_tuned.json").read_text())
    for line in printed:  # "chosen: ARCH k=v, ... (study S, trial T: ...)"
        arch = line.split()[1]
        chosen = search["architectures"][arch]["chosen"]
        assert f"(study {chosen['study']}, trial {chosen['trial']}:" in line
        assert search["architectures"][arch]["trained_settings"] == chosen["settings"]
    assert len(printed) == 2
    trials = pd.read_csv(folder / "trials_tuned.csv")
    assert len(trials) == 4 and trials["chosen"].sum() == 2
    md = (folder / "leaderboard.md").read_text()
    assert sections(md)[0] == "## Profile `tuned`" and "| rnn    | 2 of 1 x 2 " in md
    assert "not this search's choice" not in md


def test_a_task_setting_one_profile_leaves_out_does_not_break_the_protocol_table(tmp_path):
    """A profile's runs may lack a task parameter another profile sets (words: `holdout` in the tuned
    profile only); holdout changes the training data, not the test data, so the rows still pair."""
    results = tmp_path / "results"
    folder = results / "copy"
    folder.mkdir(parents=True)
    runs, tuning = store_records()
    runs = [dict(r, task_params={**r["task_params"], "holdout": 1}) if r["profile"] == "tuned" else r for r in runs]
    (folder / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    (folder / "tuning.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tuning))
    build_leaderboard("copy", results, log=lambda *a: None)
    protocol = pd.read_csv(folder / "protocol.csv")
    assert sorted(protocol["arch"]) == ["lstm", "rnn"] and set(protocol["reference"]) == {"standard"}
