"""`cwbench verify`: reruns of a store's rows, bitwise and statistical verdicts, and the
statistical criterion itself (its false-failure rate and power, by simulation)."""

import json

import numpy as np
import pytest

from bench.cli import main
from bench.report import stats
from bench.report.verify import Check, Row, command_args, judge, machine_comparison
from bench.store.records import ABSENT, RunConfig, RunRecord

TINY = ["--archs", "rnn", "cwrnn/exponential", "--budgets", "400", "--steps", "3",
        "--param", "delay=3", "--param", "variable_delay=false"]


def make_store(tmp_path, seeds=3):
    results = tmp_path / "results"
    assert main(["run", "copy", "--results", str(results), *TINY, "--seeds", str(seeds), "--no-leaderboard",
                 "--workers", "1"]) == 0
    return results, results / "copy" / "runs.jsonl"


def rewrite(path, edit):
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        edit(r)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def verify(results, tmp_path, *extra):
    return main(["verify", "copy", "--results", str(results), "--scratch", str(tmp_path / "scratch"),
                 "--workers", "1", *extra])


def row_line(out, arch):
    return next(line for line in out.splitlines() if line.startswith(f"quick {arch} "))


def test_a_store_reproduces_bitwise_on_the_machine_that_made_it(tmp_path, capsys):
    results, _ = make_store(tmp_path)
    capsys.readouterr()
    assert verify(results, tmp_path) == 0
    out = capsys.readouterr().out
    assert "bitwise identity expected here" in out
    assert row_line(out, "rnn").endswith("bitwise") and row_line(out, "cwrnn/exponential").endswith("bitwise")
    assert "2 rows: 2 bitwise." in out
    assert (tmp_path / "scratch" / "copy" / "leaderboard.md").exists()


def elsewhere(r, shift_arch=None, shift=0.0):
    """The record as another machine would have made it: another CPU, other rounding."""
    r["machine"]["cpu_model"] = "Intel Xeon"
    r["metrics"]["recall_accuracy"] += 1e-3 * (r["seed"] - 2.5) + (shift if r["arch"] == shift_arch else 0.0)


def test_on_another_machine_reruns_are_tested_and_a_shifted_row_fails(tmp_path, capsys):
    """Six seeds, four reruns each: a row whose committed values lie far from what this code
    gives is inconsistent (exit 1); one within its spread is consistent."""
    results, path = make_store(tmp_path, seeds=6)
    rewrite(path, lambda r: elsewhere(r, "rnn", 0.5))
    capsys.readouterr()
    assert verify(results, tmp_path, "--sample", "4") == 1
    out = capsys.readouterr().out
    assert "bitwise identity not expected here, these differ: CPU model (records: Intel Xeon; here:" in out
    assert row_line(out, "rnn").endswith("INCONSISTENT") and "4 different" in row_line(out, "rnn")
    assert row_line(out, "cwrnn/exponential").endswith("consistent")
    assert "Holm-corrected over the 2 rows tested" in out


def test_too_few_seeds_to_tell_says_how_many_reruns_would_and_passes(tmp_path, capsys):
    results, path = make_store(tmp_path, seeds=3)
    rewrite(path, lambda r: elsewhere(r, "rnn", 0.5))
    capsys.readouterr()
    assert verify(results, tmp_path) == 0
    out = capsys.readouterr().out
    line = row_line(out, "rnn")
    needed = stats.reruns_needed(3, 0.05 / 1)
    assert f"too few seeds to tell (3 seeds, 1 reruns: --sample {needed} would tell)" in line


def test_reruns_beyond_the_committed_seeds_train_new_seeds(tmp_path, capsys):
    results, path = make_store(tmp_path, seeds=2)
    rewrite(path, lambda r: elsewhere(r))
    capsys.readouterr()
    assert verify(results, tmp_path, "--sample", "3") == 0
    out = capsys.readouterr().out
    assert "rerunning 6 runs (3 per row)" in out and "2 different, 1 new seed" in row_line(out, "rnn")
    seeds = sorted(json.loads(line)["seed"] for line in (tmp_path / "scratch" / "copy" / "runs.jsonl").open())
    assert seeds == [0, 0, 1, 1, 2, 2]


def test_a_run_its_command_no_longer_declares_is_reported(tmp_path, capsys):
    results, path = make_store(tmp_path)
    rewrite(path, lambda r: r.update(command="cwbench run copy " + " ".join(TINY).replace("400", "2000")))
    capsys.readouterr()
    assert verify(results, tmp_path) == 1
    out = capsys.readouterr().out
    assert all("NOT REBUILT" in row_line(out, arch) for arch in ("rnn", "cwrnn/exponential"))


def test_commands_are_read_as_cwbench_run_arguments():
    assert command_args("nox -s copy", "copy", "quick") == ["run", "copy"]
    assert command_args("nox -s audio -- --profile paper --seeds 5", "audio", "paper") == [
        "run", "audio", "--profile", "paper", "--seeds", "5"]
    assert command_args("cwbench run copy --seeds 2", "copy", "quick") == ["run", "copy", "--seeds", "2"]
    assert command_args("", "copy", "standard") == ["run", "copy", "--profile", "standard"]


def test_each_run_is_rerun_on_its_own_recorded_thread_count(tmp_path, capsys, monkeypatch):
    """Records of one store can disagree on threads (a process whose count changed midway):
    each rerun takes its own record's count."""
    results, path = make_store(tmp_path)
    rewrite(path, lambda r: r["machine"].update(torch_threads=1 + r["seed"] % 2))
    seen = []
    from bench.sweep import runner

    real = runner.run_suite

    def spy(runs, *args, **kwargs):
        import torch

        seen.append((torch.get_num_threads(), sorted(c.seed for c, _ in runs)))
        return real(runs, *args, **kwargs)

    monkeypatch.setattr(runner, "run_suite", spy)
    assert verify(results, tmp_path, "--sample", "2") == 0
    assert sorted(seen) == [(1, [0, 0]), (2, [1, 1])]


# ---------------------------------------------------------------------------------------
# the verdicts, without training


def record(seed, value):
    config = RunConfig("copy", "quick", {}, "rnn", {}, 10, 10, {}, seed)
    return RunRecord(config.run_id, config, "ok", "", {"m": value}, "m", True, machine={"cpu_model": "AMD EPYC"},
                     versions={"torch": "2.13.0"})


def check(committed, reruns, kinds):
    row = Row((), [record(s, v) for s, v in enumerate(committed)], "row")
    return Check(row, row.records[:len(kinds)], [f"new{i}" for i in range(len(reruns) - len(kinds))], list(kinds),
                 list(reruns))


def test_verdicts_bitwise_close_and_tested():
    spread = list(np.linspace(0, 1, 10))
    rows = [check(spread, spread[:5], ["bitwise"] * 5), check(spread, spread[:5], ["bitwise", "close"] * 2 + ["close"]),
            check(spread, [0.5] * 5, ["different"] * 5), check(spread, [9.0] * 5, ["different"] * 5),
            check([0.1, 0.2, 0.3], [9.0], ["different"])]
    judge(rows, "m", 0.05)
    assert [c.verdict.split(" (")[0] for c in rows] == [
        "bitwise", "close", "consistent", "INCONSISTENT", "too few seeds to tell"]
    # the family is the two testable rows; the 3-seed row would need C(3 + k, k) >= 3 / 0.05
    assert rows[4].verdict == "too few seeds to tell (3 seeds, 1 reruns: --sample 6 would tell)"
    assert rows[3].p == pytest.approx(1 / 3003)


def test_the_header_says_what_differs_from_the_records_machine():
    here = {"cpu_model": "AMD EPYC", "cpu_flags_sha256": "f", "torch_cpu_capability": "AVX2"}
    made = record(0, 0.5)
    made.machine = dict(here)
    assert machine_comparison([made], here, {"torch": "2.13.0"})[0]
    made.machine, made.versions = {**here, "cpu_model": "Intel Xeon"}, {"torch": "2.12.0"}
    expected, line = machine_comparison([made], here, {"torch": "2.13.0"})
    assert not expected
    assert "CPU model (records: Intel Xeon; here: AMD EPYC)" in line and "torch (records: 2.12.0; here: 2.13.0)" in line
    made.machine = ABSENT
    assert "do not name the machine" in machine_comparison([made], here, {})[1]


# ---------------------------------------------------------------------------------------
# the criterion: a faithful reproduction fails at most alpha of the time; a shift is seen

DISTRIBUTIONS = {
    "normal": lambda rng, size: rng.normal(0.5, 0.1, size),
    "skewed": lambda rng, size: rng.lognormal(-3, 1.5, size),  # NMSE-like: most near 0, a long tail
    "bounded near 0": lambda rng, size: rng.beta(0.3, 30, size),
    "bounded near 1": lambda rng, size: rng.beta(30, 0.3, size),  # recall of a solved copy task
    "one seed blown up": lambda rng, size: np.where(rng.random(size) < 0.1, rng.normal(30, 5, size),
                                                    rng.normal(1, 0.01, size)),
}


def family_fails(draw, rows, n, k, families, rng, shift=0.0):
    """How often a family of `rows` rows (n seeds, k reruns each) fails, and how often its first
    row is flagged, when the reruns come from the seeds' distribution (plus `shift` in row 0)."""
    fails = flagged = 0
    for _ in range(families):
        committed, reruns = draw(rng, (rows, n)), draw(rng, (rows, k))
        reruns[0] += shift
        rejected = stats.holm(list(stats.permutation_p_many(np.concatenate([reruns, committed], axis=1), k)), 0.05)
        fails += any(rejected)
        flagged += rejected[0]
    return fails / families, flagged / families


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_the_family_wise_false_failure_rate_is_within_its_level(name):
    """10 rows of 10 seeds, 5 reruns each, 1000 families: at most 5% plus three standard errors
    of the simulation (0.021)."""
    rate, _ = family_fails(DISTRIBUTIONS[name], 10, 10, 5, 1000, np.random.default_rng(0))
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 1000)


def test_a_shift_of_two_standard_deviations_is_detected():
    """The stated case (docs/protocol.md): a row of 10 seeds, 5 reruns, shifted by 2 sd, is
    flagged 92% of the time alone and 62% of the time in a family of 10 rows (1000 families)."""
    alone = family_fails(DISTRIBUTIONS["normal"], 1, 10, 5, 400, np.random.default_rng(1), shift=0.2)[1]
    in_ten = family_fails(DISTRIBUTIONS["normal"], 10, 10, 5, 400, np.random.default_rng(2), shift=0.2)[1]
    assert alone >= 0.85 and in_ten >= 0.5
