"""Leaderboards from hand-made run records: statistics, the test against the best row,
per-seed aggregation over targets, not-learned runs, one set of plots per profile, external
rows kept apart, and the leaderboard on the W&B dashboard."""

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from bench.report import plots
from bench.report.leaderboard import build_leaderboard, leaderboard_table, markdown, runs_frame
from bench.report.stats import bootstrap_ci, welch_p
from bench.store.records import RunRecord
from models.errors import UserInputError

COPY = {"task": "copy", "title": "Copy", "leaderboard": {"aggregate_over": []}}
AUDIO = {"task": "audio", "title": "Audio", "leaderboard": {"aggregate_over": ["target", "sha256"]}}
SHA = {t: hashlib.sha256(t.encode()).hexdigest() for t in ("synth:pluck", "synth:chord")}


def record(arch="rnn", seed=0, value=0.5, profile="quick", budget=100, task_params=None, learned=None,
           primary="recall_accuracy", higher=True, artifacts=None):
    """A run record of the shape the runner stores; `learned` None: an old record without the field."""
    task_params = task_params or {"delay": 10, "variable_delay": False}
    r = {
        "run_id": hashlib.sha256(repr((arch, seed, profile, budget, task_params)).encode()).hexdigest()[:16],
        "task": "copy", "profile": profile, "task_params": task_params, "arch": arch,
        "model": {"arch": arch, "hidden_size": 4, "schedule": "", "periods": [], "module_sizes": [], "offset": 0,
                  "order": []},
        "budget": budget, "params": budget, "effective_params": budget, "seed": seed, "status": "ok", "reason": "",
        "train": {"steps": 10, "batch_size": 4, "optimizer": "adam", "lr": 0.01},
        "metrics": {primary: value}, "curve": [{"step": step, f"val/{primary}": value} for step in (5, 10)],
        "artifacts": artifacts or {}, "backend": "torch", "sources": {}, "baselines": {primary: 0.125},
        "primary_metric": primary, "higher_is_better": higher, "wall_time_s": 1.0, "device": "cpu",
        "git_commit": "abc", "versions": {"torch": "2"}, "date": "2026-01-01T00:00:00+00:00",
        "command": f"cwbench run copy --profile {profile}",
    }
    if learned is not None:
        r["learned"] = learned
    return r


def typed(records):
    return [RunRecord.from_dict(r) for r in records]


def frame(records):
    """The leaderboard's frame of hand-made records (read as the store's are)."""
    return runs_frame(typed(records))


def runs(arch, values, **kwargs):
    return [record(arch, seed, v, **kwargs) for seed, v in enumerate(values)]


def row(table, arch, **where):
    match = table[table["arch"] == arch]
    for k, v in where.items():
        match = match[match[k] == v]
    assert len(match) == 1
    return match.iloc[0]


def board(records, suite=COPY, per_target=None):
    df = frame(records)
    return markdown(leaderboard_table(df, suite), df, suite, suite["task"], {}, per_target)


def table_lines(md):
    return [line for line in md.splitlines() if line.startswith("|")]


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_interval_columns_contain_the_mean_and_degenerate_rows_do_not_crash():
    records = runs("rnn", [0.2, 0.3, 0.25, 0.4]) + runs("lstm", [0.6]) + runs("gru", [0.5, 0.5, 0.5])
    table = leaderboard_table(frame(records), COPY)
    rnn = row(table, "rnn")
    low, high = map(float, rnn["ci95"].strip("[]").split(", "))
    assert low < rnn["_mean.recall_accuracy"] < high and rnn["recall_accuracy"] == "0.2875 ± 0.085"
    assert row(table, "lstm")["ci95"] == "—"  # one seed: no interval
    assert row(table, "gru")["ci95"] == "[0.5, 0.5]"  # no spread: the degenerate one
    assert "ci95" in table_lines(board(records))[0]
    seeds = [0.1 * i + 0.01 * i * i for i in range(12)]
    assert bootstrap_ci(seeds) == bootstrap_ci(seeds)  # a fixed seed: a rebuild is byte-identical


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_p_against_the_best_row_and_bold_only_when_separated():
    separated = runs("a", [0.9, 0.92, 0.91, 0.93]) + runs("b", [0.5, 0.52, 0.49, 0.51]) + runs("c", [0.2, 0.2, 0.2])
    table = leaderboard_table(frame(separated), COPY)
    assert row(table, "a")["p"] == "best" and all(float(row(table, x)["p"]) < 0.05 for x in "bc")
    md = board(separated)
    assert "| **a** " in md and "**b**" not in md and "at p < 0.05 (Welch)" in md

    tied = runs("a", [0.5, 0.7, 0.6]) + runs("b", [0.45, 0.75, 0.55]) + runs("c", [0.1, 0.12, 0.11])
    table = leaderboard_table(frame(tied), COPY)
    assert row(table, "a")["p"] == "best" and float(row(table, "b")["p"]) > 0.05 > float(row(table, "c")["p"])
    assert "**a**" not in board(tied)

    lower = runs("a", [0.1, 0.12, 0.11], primary="nmse", higher=False) + runs("b", [0.9, 0.8, 0.85], primary="nmse",
                                                                               higher=False)
    assert row(leaderboard_table(frame(lower), COPY), "a")["p"] == "best"  # direction from higher_is_better

    untestable = runs("a", [0.9]) + runs("b", [0.5, 0.6]) + runs("c", [0.4, 0.4], budget=500) + runs(
        "d", [0.3, 0.3], budget=500) + runs("e", [0.2, 0.2, 0.2], budget=1000)
    table = leaderboard_table(frame(untestable), COPY)
    assert row(table, "b")["p"] == "—"  # one seed on the best side
    assert row(table, "d")["p"] == "—"  # no spread on either side
    assert row(table, "e")["p"] == "best"  # alone in its budget: nothing to be separated from
    assert "**" not in "".join(table_lines(board(untestable)))
    assert welch_p([0.5, 0.5], [0.4, 0.4]) is None and welch_p([0.5, 0.5], [0.4, 0.41]) is not None


def test_aggregated_rows_average_each_seed_over_its_targets_first():
    def audio(arch, seed, target, value):
        return record(arch, seed, value, primary="nmse", higher=False,
                      task_params={"target": target, "sha256": SHA[target], "length": 320})

    # per seed: (0.1 + 0.9) / 2 = 0.5 and (0.2 + 1.0) / 2 = 0.6, std 0.071; pooled over runs it would be 0.47
    balanced = [audio("rnn", 0, "synth:pluck", 0.1), audio("rnn", 0, "synth:chord", 0.9),
                audio("rnn", 1, "synth:pluck", 0.2), audio("rnn", 1, "synth:chord", 1.0)]
    rnn = leaderboard_table(frame(balanced), AUDIO).iloc[0]
    assert rnn["nmse"] == "0.55 ± 0.071" and rnn["n"] == 4 and rnn["seeds"] == 2
    assert rnn["_per_seed"] == pytest.approx((0.5, 0.6))

    # seed 2 ran on pluck only: targets' means 0.2 and 0.95 weigh the same, so the mean is 0.575
    # (the mean over runs would be 0.5, over per-seed averages 0.4667)
    unbalanced = balanced + [audio("rnn", 2, "synth:pluck", 0.3)]
    rnn = leaderboard_table(frame(unbalanced), AUDIO).iloc[0]
    assert rnn["_mean.nmse"] == pytest.approx(0.575) and rnn["_per_seed"] == pytest.approx((0.5, 0.6, 0.3))

    df = frame(unbalanced + [audio("lstm", 0, "synth:pluck", 0.4), audio("lstm", 0, "synth:chord", 0.6)])
    per_target = leaderboard_table(df, AUDIO, aggregate_over=[])
    md = markdown(leaderboard_table(df, AUDIO), df, AUDIO, "audio", {}, per_target)
    assert "### Per target" in md and "Aggregated over target (sha256), the seed" in md
    assert re.search(r"[0-9a-f]{64}", md) is None  # no full hash anywhere
    pluck, chord = (f"{t} ({SHA[t][:8]})" for t in ("synth:pluck", "synth:chord"))
    assert f"Aggregated over target (sha256): `{chord}`, `{pluck}`" in md
    per_target_rows = [line for line in md.split("### Per target")[1].splitlines() if line.startswith("| rnn")]
    assert len(per_target_rows) == 2 and pluck in per_target_rows[1] and "0.2 ± 0.1" in per_target_rows[1]


def test_not_learned_runs_are_counted_and_a_row_with_none_learned_is_marked():
    records = (runs("a", [0.13, 0.12], learned=False) + [record("b", 0, 0.9, learned=True), record("b", 1, 0.12,
               learned=False)] + runs("c", [0.12, 0.13]))  # c: old records, unknown
    table = leaderboard_table(frame(records), COPY)
    a, b, c = (row(table, x) for x in "abc")
    assert (a["not_learned"], b["not_learned"], c["not_learned"]) == (2, 1, "—")
    assert a["recall_accuracy"].endswith(" (not learned)")
    assert "not learned" not in b["recall_accuracy"] + c["recall_accuracy"]
    md = board(records)
    assert "not_learned" in table_lines(md)[0] and "`not_learned` = finished runs" in md


def _copy_runs(profile, values):
    return [record(arch, seed, v, profile=profile, task_params={"delay": 10, "variable_delay": False, "min_delay": 5})
            for arch in ("rnn", "lstm") for seed, v in enumerate(values)]


def test_plots_are_per_profile_and_stale_ones_go(tmp_path, monkeypatch):
    out = tmp_path / "copy"
    out.mkdir()
    records = _copy_runs("quick", [0.2, 0.3]) + _copy_runs("paper", [0.6, 0.7])
    (out / "runs.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    for stale in ("learning_curves.png", "error_by_arch_quick.png"):
        (out / stale).write_bytes(b"old")
    seen = []
    for name, plot in list(plots.PLOTS.items()):
        def spy(df, recs, suite, out_dir, plot=plot):
            seen.append((set(df["profile"]), {r.profile for r in recs}, len(df) == len(recs)))
            return plot(df, recs, suite, out_dir)
        monkeypatch.setitem(plots.PLOTS, name, spy)

    build_leaderboard("copy", tmp_path, log=lambda *a: None)
    assert sorted(p.name for p in out.glob("*.png")) == [
        "learning_curves_paper.png", "learning_curves_quick.png",
        "recall_accuracy_vs_delay_paper.png", "recall_accuracy_vs_delay_quick.png"]
    assert len(seen) == 4
    assert all(len(frame) == 1 and frame == recs and same_length for frame, recs, same_length in seen)
    md = (out / "leaderboard.md").read_text()
    paper, quick = md.split("## Profile `paper`")[1].split("## Profile `quick`")
    assert "(learning_curves_paper.png)" in paper and "_quick.png" not in paper
    assert "(learning_curves_quick.png)" in quick and "_paper.png" not in quick
    with pytest.raises(ValueError, match="one profile"):
        plots.learning_curves(frame(records), typed(records), COPY, out)


def test_waveforms_show_each_archs_best_run_on_the_best_runs_target(tmp_path, monkeypatch):
    def audio(arch, seed, target, nmse, budget=1000):
        wave = {"target": [0.0, 0.5, -0.5, 0.0], "generated": [0.0, 0.4, -0.4, 0.0]}
        return record(arch, seed, nmse, budget=budget, primary="nmse", higher=False, artifacts=wave,
                      task_params={"target": target, "sha256": SHA[target], "sample_rate": 44100})

    records = [audio("a", 0, "synth:pluck", 0.3), audio("a", 1, "synth:chord", 0.1),  # best at 1000: chord
               audio("b", 0, "synth:pluck", 0.2), audio("b", 1, "synth:chord", 0.4), audio("b", 2, "synth:chord", 0.35),
               audio("b", 3, "synth:chord", 0.01, budget=100)]  # better, but not the largest budget
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append((fig, path)) or path)
    path = plots.waveforms(frame(records), typed(records), AUDIO, tmp_path)
    assert path.name == "waveforms_quick.png"
    fig = figures[0][0]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["a: 1000 params, seed 1, NMSE 0.1", "b: 1000 params, seed 2, NMSE 0.35"]
    assert f"synth:chord ({SHA['synth:chord'][:8]}), budget 1000" in fig.get_suptitle()
    plots.plt.close(fig)


# --- plots a reader can use ------------------------------------------------------------

COPY_X = {**COPY, "leaderboard": {"aggregate_over": [], "x_axis": "delay"},
          "profiles": {"quick": {"archs": ["rnn", "lstm", "gru", "cwrnn/exponential", "cwrnn/dense"]}}}
DELAYS = {"fixed": {"delay": 10, "variable_delay": False, "min_delay": 10},
          "variable": {"delay": 10, "variable_delay": True, "min_delay": 5}}


def _copy_quick():
    """The quick profile's shape: one delay, fixed and variable; three archs stuck at the baseline."""
    records = []
    for params in DELAYS.values():
        for arch, value in (("rnn", 0.125), ("lstm", 0.125), ("gru", 0.9), ("cwrnn/exponential", 0.6),
                            ("cwrnn/dense", 0.125)):
            records += [record(arch, seed, value + 0.001 * seed, task_params=params, learned=value > 0.2)
                        for seed in range(3)]
    return records


def _drawn(monkeypatch, plot, records, suite, tmp_path):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    path = plot(frame(records), typed(records), suite, tmp_path)
    fig = figures[0]
    fig.canvas.draw()
    return path, fig


def _titles_fit_and_do_not_overlap(fig):
    renderer = fig.canvas.get_renderer()
    texts = [t for t in [fig._suptitle, *(ax.title for ax in fig.axes if ax.get_visible())] if t and t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    for text, box in zip(texts, boxes):
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1, text.get_text()
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), [t.get_text() for t in texts]


def test_copy_setting_labels_name_the_delay_kind_and_its_range():
    from tasks.copy import CopyTask

    keys = ["variable_delay", "min_delay"]
    assert CopyTask.setting_label(DELAYS["fixed"], keys) == "fixed delay 10"
    assert CopyTask.setting_label(DELAYS["variable"], keys) == "variable delay 5–10"
    assert CopyTask.setting_label(DELAYS["variable"], keys, x="delay") == "variable delay 5–D"
    assert CopyTask.setting_label({**DELAYS["fixed"], "eval_sequences": 64}, ["eval_sequences"]) == (
        "fixed delay 10, eval_sequences=64")


def test_metric_vs_x_with_one_delay_shows_each_setting_and_every_arch_apart(tmp_path, monkeypatch):
    from matplotlib.colors import to_rgba

    path, fig = _drawn(monkeypatch, plots.metric_vs_x, _copy_quick(), COPY_X, tmp_path)
    assert path.name == "recall_accuracy_vs_delay_quick.png"
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["fixed delay D", "variable delay 5–D"]
    _titles_fit_and_do_not_overlap(fig)
    for ax in panels:
        # the mean markers: one per arch, each at its own x, hollow where no run learned
        means = [line for line in ax.lines if line.get_markersize() == 7]
        assert len(means) == 5 and len({line.get_xdata()[0] for line in means}) == 5
        assert len({line.get_marker() for line in means}) == 5
        at_baseline = [line for line in means if line.get_ydata()[0] < 0.2]
        assert len(at_baseline) == 3 and all(
            to_rgba(line.get_markerfacecolor()) == (1, 1, 1, 1) for line in at_baseline)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:5] == ["rnn", "lstm", "gru", "cwrnn/exponential", "cwrnn/dense"]
    assert "trivial baseline (0.125)" in legend
    plots.plt.close(fig)


def test_learning_curves_have_short_panel_titles_that_fit(tmp_path, monkeypatch):
    records = [record(arch, seed, 0.5, task_params={**params, "delay": delay, "min_delay": delay if kind == "fixed"
                                                     else 5})
               for kind, params in DELAYS.items() for delay in (10, 30) for arch in ("rnn", "lstm", "gru")
               for seed in range(2)]
    _, fig = _drawn(monkeypatch, plots.learning_curves, records, COPY_X, tmp_path)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["fixed delay 10", "fixed delay 30", "variable delay 5–10", "variable delay 5–30"]
    _titles_fit_and_do_not_overlap(fig)
    styles = {(line.get_linestyle(), line.get_marker()) for line in fig.axes[0].lines if line.get_marker() != "None"}
    assert len(styles) == 3  # one line style and marker per architecture
    plots.plt.close(fig)


def test_a_long_title_is_wrapped_to_fit(tmp_path, monkeypatch):
    suite = {"task": "synthwords", "title": "Synthetic spoken words (offline stand-in corpus in the TIMIT layout; "
             "NOT TIMIT)", "leaderboard": {"aggregate_over": []}}
    records = [record(arch, seed, v, primary="error", higher=False, budget=10000)
               for arch, v in (("rnn", 0.7), ("lstm", 0.2)) for seed in range(3)]
    _, fig = _drawn(monkeypatch, plots.metric_by_arch, records, suite, tmp_path)
    assert "\n" in fig.axes[0].get_title()
    _titles_fit_and_do_not_overlap(fig)
    plots.plt.close(fig)


def test_plots_are_byte_identical_on_a_rebuild(tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    (out / "runs.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in _copy_quick()))
    build_leaderboard("copy", tmp_path, log=lambda *a: None)
    first = {p.name: p.read_bytes() for p in out.glob("*.png")}
    build_leaderboard("copy", tmp_path, log=lambda *a: None)
    assert len(first) == 2 and {p.name: p.read_bytes() for p in out.glob("*.png")} == first


def test_findings_name_dead_rows_early_stopping_and_the_paper_order():
    records = (runs("rnn", [0.12, 0.13], learned=False) + runs("lstm", [0.5, 0.6], learned=True)
               + runs("gru", [0.7, 0.8], learned=True))
    for i, r in enumerate(records):
        r.update(stopped="patience" if i % 2 else "cap", epochs_trained=10 + i)
    suite = {**COPY, "leaderboard": {"aggregate_over": [], "paper": [
        {"arch": "rnn", "value": "0.2"}, {"arch": "lstm", "value": "0.9 ± 0.1"}, {"arch": "gru", "value": "0.5"}]}}
    findings = board(records, suite).split("### Findings")[1].split("##")[0]
    assert "Did not learn (no run beat the trivial baseline): rnn at budget 100." in findings
    assert "3 of 6 runs stopped by patience, 3 at the cap; median epochs trained: rnn 10.5, lstm 12.5, gru 14.5" \
        in findings
    assert "ours gru > lstm > rnn; paper lstm > gru > rnn (a different order" in findings


# --- external rows: kept apart from what this repository reproduced ------------------------

def test_external_rows_are_marked_ranked_apart_and_never_bold(tmp_path):
    plugin = {"plugin": "myrnn", "source": "myrnn.py", "sha256": "0" * 64}
    verified = runs("a", [0.5, 0.52, 0.51, 0.53]) + runs("b", [0.2, 0.21, 0.2, 0.22])
    external = [{**r, "external": plugin} for r in runs("c", [0.9, 0.91, 0.92, 0.9]) + runs("d", [0.6, 0.6, 0.61])]
    table = leaderboard_table(runs_frame(typed(verified + external)), COPY)
    assert list(table["arch"]) == ["a", "b", "c", "d"]  # the verified rows first, though c beats them all
    assert list(table["external"]) == [False, False, True, True]
    assert row(table, "a")["p"] == "best" and row(table, "a")["_separated"]  # separated from b alone
    assert row(table, "c")["p"] == "best" and not row(table, "c")["_separated"]  # best of the external rows only
    assert float(row(table, "d")["p"]) < 0.05  # tested against the best external row, not against a
    md = board(verified + external)
    lines = table_lines(md)
    assert lines[2].startswith("| **a**") and lines[4].startswith("| c (external)")
    assert "**c" not in md and "| d (external)" in md
    assert "(external): a row with runs made outside this repository (plugin myrnn)" in md
    assert "- external runs, not reproduced here: 7 (plugin myrnn)" in md
    # no external record: no mark, no note
    assert "(external)" not in board(verified) and "external runs" not in board(verified)


def test_a_row_is_external_until_its_runs_are_reproduced_here(tmp_path):
    from bench.store import verified as verifications

    records = runs("a", [0.5, 0.6]) + [{**r, "external": {"imported_from": "x.tar.gz", "sha256": "1" * 64}}
                                        for r in runs("b", [0.7, 0.8])]
    store = tmp_path / "copy" / "runs.jsonl"
    assert verifications.reproduced_ids(store) == set()
    ids = [r["run_id"] for r in records if r["arch"] == "b"]
    verifications.append(store, [{"run_ids": ids, "verdict": "bitwise", "reproduced": True}])
    table = leaderboard_table(runs_frame(typed(records), verifications.reproduced_ids(store)), COPY)
    assert not table["external"].any() and row(table, "b")["p"] == "best"
    # a later verification that fails takes the row back; a torn last line (a killed writer) is no verdict
    verifications.append(store, [{"run_ids": ids[:1], "verdict": "INCONSISTENT", "reproduced": False}])
    with open(verifications.verified_path(store), "a") as f:
        f.write('{"run_ids": ["' + ids[0] + '"], "repro')
    assert verifications.reproduced_ids(store) == set(ids[1:])
    assert row(leaderboard_table(runs_frame(typed(records), set(ids[1:])), COPY), "b")["external"]
    verifications.verified_path(store).write_text('{"run_ids": "abc", "reproduced": true}\n')
    with pytest.raises(UserInputError, match=r"verified.jsonl line 1 is not a verification"):
        verifications.reproduced_ids(store)


def test_leaderboard_goes_to_wandb_as_tables_and_figures(tmp_path, monkeypatch):
    """`cwbench leaderboard copy --wandb` offline: one run of job type leaderboard holding each
    profile's table (a run_table artifact, read back) and its figures."""
    pytest.importorskip("wandb")
    from wandb_offline import read_run
    from wandb_offline import records as wandb_records

    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": tmp_path / "w",
                       "WANDB_CONFIG_DIR": tmp_path / "config", "WANDB_CACHE_DIR": tmp_path / "cache",
                       "WANDB_DATA_DIR": tmp_path / "data"}.items():
        monkeypatch.setenv(key, str(value))
    (tmp_path / "w").mkdir()
    out = tmp_path / "results" / "copy"
    out.mkdir(parents=True)
    records = _copy_runs("quick", [0.2, 0.3]) + _copy_runs("paper", [0.6, 0.7])
    (out / "runs.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    # in a process of its own: wandb's service writes the run's log on its own time, all of it by the
    # time the process that logged has exited (in this process, teardown did not always wait for it)
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "copy", "--results", str(tmp_path / "results"),
                           "--wandb"], cwd=Path(__file__).resolve().parent.parent, env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    [run_dir] = (tmp_path / "w" / "wandb").glob("offline-run-*")
    logged = read_run(run_dir)
    kinds = {}
    for item in wandb_records(next(run_dir.glob("*.wandb"))):
        kinds.setdefault(item.WhichOneof("record_type"), []).append(item)
    [started] = kinds["run"]
    assert (started.run.job_type, started.run.run_group, started.run.project) == ("leaderboard", "copy",
                                                                                 "clockwork-bench")
    assert logged["config"]["task"] == "copy" and logged["config"]["runs"] == len(records)
    artifacts = {item.artifact.type for item in kinds["artifact"]}
    assert artifacts == {"run_table"} and len(kinds["artifact"]) == 2  # one table per profile
    [step] = logged["history"]
    csv = pd.read_csv(out / "leaderboard.csv", keep_default_na=False)
    for profile in ("paper", "quick"):
        assert step[f"{profile}/leaderboard/_type"] == "table-file"
        table = json.loads((run_dir / "files" / step[f"{profile}/leaderboard/path"]).read_text())
        mine = csv[csv["profile"] == profile]
        assert table["columns"] == list(csv.columns) and len(table["data"]) == len(mine)
        column = table["columns"].index
        assert [r[column("arch")] for r in table["data"]] == list(mine["arch"])
        assert [r[column("recall_accuracy")] for r in table["data"]] == list(mine["recall_accuracy"])
        assert [r[column("external")] for r in table["data"]] == [False] * len(mine)
        for figure in ("learning_curves", "recall_accuracy_vs_delay"):
            assert step[f"{profile}/{figure}/_type"] == "image-file"
            assert (run_dir / "files" / step[f"{profile}/{figure}/path"]).is_file()
