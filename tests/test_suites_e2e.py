"""Each task's suite through the CLI, tiny: store, leaderboard and plots in a temp dir (every
profile of every suite is resolved in test_suites.py)."""

import json

from bench.cli import main
from tasks.timit.synth import write_synthetic_corpus


def records(results, task):
    return [json.loads(line) for line in (results / task / "runs.jsonl").read_text().splitlines()]


def test_audio_suite_end_to_end(tmp_path):
    args = ["run", "audio", "--results", str(tmp_path), "--archs", "lstm", "cwrnn/exponential",
            "--budgets", "100", "1000", "--seeds", "1", "--steps", "3", "--param", "target=synth:bell"]
    assert main(args) == 0
    runs = records(tmp_path, "audio")
    assert len(runs) == 4 and all(r["status"] == "ok" for r in runs)
    assert all(len(r["artifacts"]["generated"]) == 320 for r in runs)
    assert all(r["sources"]["source"] == "synthesised" for r in runs)
    assert {r["params"] for r in runs if r["budget"] == 100} <= set(range(85, 116))
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard_per_target.csv", "nmse_vs_budget_quick.png",
                 "waveforms_quick.png"):
        assert (tmp_path / "audio" / name).stat().st_size > 0
    board = (tmp_path / "audio" / "leaderboard.md").read_text()
    assert "0.007 ± 0.004 [to check]" in board and "synth:bell" in board


def test_timit_suite_on_a_fixture_corpus(tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    write_synthetic_corpus(root, seed=1, n_speakers=7, case="lower")
    monkeypatch.setenv("CWBENCH_CACHE", str(tmp_path / "cache"))
    args = ["run", "timit", "--timit-root", str(root), "--results", str(tmp_path), "--archs", "gru",
            "cwrnn/exponential", "--seeds", "1", "--steps", "3", "--budgets", "2000"]
    assert main(args) == 0
    runs = records(tmp_path, "timit")
    assert len(runs) == 2 and all(r["status"] == "ok" for r in runs)
    assert len(runs[0]["artifacts"]["true"]) == 50 and len(runs[0]["sources"]["selection"]) == 175
    assert "timit_root" not in runs[0]["task_params"]  # the corpus is identified by content
    for name in ("leaderboard.md", "error_by_arch_quick.png", "confusion_best_quick.png"):
        assert (tmp_path / "timit" / name).stat().st_size > 0
    assert "0.19–0.23 ± 0.03 [to check]" in (tmp_path / "timit" / "leaderboard.md").read_text()
