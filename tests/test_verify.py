"""`cwbench verify`: reruns of a store's rows, bitwise and statistical verdicts."""

import json

from bench.cli import main
from bench.verify import command_args, interval_of_mean

TINY = ["--archs", "rnn", "cwrnn/exponential", "--budgets", "400", "--seeds", "3", "--steps", "3",
        "--param", "delay=3", "--param", "variable_delay=false"]


def make_store(tmp_path):
    results = tmp_path / "results"
    assert main(["run", "copy", "--results", str(results), *TINY, "--no-leaderboard"]) == 0
    return results, results / "copy" / "runs.jsonl"


def rewrite(path, edit):
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        edit(r)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_store_reproduces_bitwise_on_the_machine_that_made_it(tmp_path, capsys):
    results, _ = make_store(tmp_path)
    capsys.readouterr()
    assert main(["verify", "copy", "--results", str(results), "--scratch", str(tmp_path / "scratch")]) == 0
    out = capsys.readouterr().out
    assert out.count("1 bitwise") == 2 and "2 of 2 rows reproduce" in out
    assert (tmp_path / "scratch" / "copy" / "leaderboard.md").exists()


def test_a_row_whose_numbers_do_not_come_back_fails(tmp_path, capsys):
    results, path = make_store(tmp_path)
    rewrite(path, lambda r: r["metrics"].update(recall_accuracy=0.99) if r["arch"] == "rnn" else None)
    capsys.readouterr()
    assert main(["verify", "copy", "--results", str(results), "--scratch", str(tmp_path / "scratch")]) == 1
    out = capsys.readouterr().out
    rnn = next(line for line in out.splitlines() if line.startswith("quick rnn"))
    assert "1 different" in rnn and "[0.99, 0.99]" in rnn and "DOES NOT REPRODUCE" in rnn
    assert "1 of 2 rows reproduce" in out


def test_a_run_its_command_no_longer_declares_is_reported(tmp_path, capsys):
    results, path = make_store(tmp_path)
    rewrite(path, lambda r: r.update(command="cwbench run copy " + " ".join(TINY).replace("400", "2000")))
    capsys.readouterr()
    assert main(["verify", "copy", "--results", str(results), "--scratch", str(tmp_path / "scratch")]) == 1
    assert capsys.readouterr().out.count("NOT REBUILT") == 2


def test_commands_are_read_as_cwbench_run_arguments():
    assert command_args("nox -s copy", "copy", "quick") == ["run", "copy"]
    assert command_args("nox -s audio -- --profile paper --seeds 5", "audio", "paper") == [
        "run", "audio", "--profile", "paper", "--seeds", "5"]
    assert command_args("cwbench run copy --seeds 2", "copy", "quick") == ["run", "copy", "--seeds", "2"]
    assert command_args("", "copy", "standard") == ["run", "copy", "--profile", "standard"]


def test_the_interval_for_one_rerun_spans_the_seeds_and_narrows_with_more():
    values = [0.1, 0.2, 0.3, 0.4, 0.5]
    one, five = interval_of_mean(values, 1), interval_of_mean(values, 5)
    assert one == (0.1, 0.5)
    assert one[0] < five[0] < 0.3 < five[1] < one[1]


def test_each_run_is_rerun_on_its_own_recorded_thread_count(tmp_path, capsys, monkeypatch):
    """Records of one store can disagree on threads (a process whose count changed midway):
    each rerun takes its own record's count."""
    results, path = make_store(tmp_path)
    rewrite(path, lambda r: r["machine"].update(torch_threads=1 + r["seed"] % 2))
    seen = []
    from bench import runner

    real = runner.run_suite

    def spy(runs, *args, **kwargs):
        import torch

        seen.append((torch.get_num_threads(), sorted(c["seed"] for c, _ in runs)))
        return real(runs, *args, **kwargs)

    monkeypatch.setattr(runner, "run_suite", spy)
    assert main(["verify", "copy", "--results", str(results), "--scratch", str(tmp_path / "scratch"),
                 "--sample", "2"]) == 0
    assert sorted(seen) == [(1, [0, 0]), (2, [1, 1])]
