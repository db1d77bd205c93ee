"""`cwbench perf kernels` and `cwbench perf store` on tiny settings, and `cwbench speed`, the
old name of `perf kernels` (no timing assertions: timings are for the tools' own runs, never
for tests)."""

import shlex

import pandas as pd
import pytest

from bench.cli import main as cli
from bench.perf import kernels
from bench.perf.options import KernelsOptions
from models.architectures import ARCHITECTURES

COLUMNS = {
    "device", "shape", "arch", "kernel", "label", "match", "hidden", "params", "fwd_ms", "fwdbwd_ms", "peak_mb",
    "fwd/rnn@hidden", "fwdbwd/rnn@hidden", "fwdbwd/lstm@budget", "fwdbwd/gru@budget", "peak/reference", "auto",
    "versions", "date", "threads",
}


def test_quick_run_writes_table_csv_and_plot(tmp_path):
    assert cli(["perf", "kernels", "--quick", "--device", "cpu", "--out", str(tmp_path), "--repeats", "1"]) == 0
    csv, md, png = (tmp_path / f"speed_quick_cpu.{ext}" for ext in ("csv", "md", "png"))
    assert md.exists() and png.stat().st_size > 0
    df = pd.read_csv(csv)
    assert COLUMNS <= set(df.columns)
    assert set(df.arch) == {"cwrnn", "rnn", "lstm", "gru", "indrnn", "phased_lstm", "mingru", "lru"}
    assert {"reference", "modular"} <= set(df[df.arch == "cwrnn"].kernel)
    assert set(df[df.arch != "cwrnn"].match) == {"hidden", "budget"}
    for arch in ("indrnn", "phased_lstm", "mingru", "lru"):  # the newer recurrences at the budget, on each
        assert set(df[df.arch == arch].kernel) == set(ARCHITECTURES[arch].implementations)  # implementation
    assert (df.fwd_ms > 0).all() and (df.fwdbwd_ms > 0).all()
    text = md.read_text()
    assert "## Targets (issue 6)" in text and "torch" in text
    assert "## Newer recurrences at the budget, on each implementation" in text and "lru[scan]@budget" in text
    assert f"- command: cwbench perf kernels --quick --device cpu --out {tmp_path} --repeats 1\n" in text


def test_an_unknown_shape_is_named_with_the_known_ones(tmp_path, capsys):
    assert cli(["perf", "kernels", "--quick", "--device", "cpu", "--shapes", "audio", "b65", "--out",
                str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no shape or family named b65 in this grid: --shapes takes audio, audio-100, b-tiny, b64" in err
    assert not list(tmp_path.iterdir())  # refused before anything was measured


def test_store_benchmark_writes_a_row_per_size(tmp_path):
    assert cli(["perf", "store", "--sizes", "50", "20", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "store_cpu.csv")
    assert list(df.records) == [20, 50]
    assert (df.append_ms > 0).all() and (df.finished_ids_ms > 0).all() and (df.old_put_rewrite_s > 0).all()
    text = (tmp_path / "store_cpu.md").read_text()
    assert "append at 50 / append at 20 records = " in text
    assert f"- command: cwbench perf store --sizes 50 20 --out {tmp_path}\n" in text


def test_speed_is_perf_kernels_under_its_old_name(monkeypatch, capsys, tmp_path):
    seen = []
    monkeypatch.setattr(kernels, "run", lambda options: seen.append(options) or 0)
    words = ["--device", "cpu", "--shapes", "audio", "copy", "--repeats", "2", "--no-memory", "--out", str(tmp_path)]
    assert cli(["perf", "kernels", *words]) == 0
    assert capsys.readouterr().err == ""
    assert cli(["speed", *words]) == 0
    assert capsys.readouterr().err == "note: `cwbench speed` is now `cwbench perf kernels` (the old name goes in " \
                                      "the next release)\n"
    # the same options, and the command recorded is the one that will still reproduce the tables
    assert seen == 2 * [KernelsOptions(device="cpu", out=tmp_path, repeats=2, shapes=("audio", "copy"), memory=False,
                                       command="cwbench perf kernels " + shlex.join(words))]


@pytest.mark.parametrize(("argv", "said"), [
    (["--interference"], "`cwbench speed --interference` is now `cwbench perf interference`: run that"),
    (["--store", "--sizes", "20"], "`cwbench speed --store` is now `cwbench perf store`: run that"),
    (["--sizes", "20"], "`cwbench speed --store` is now `cwbench perf store`: run that"),
    (["--interference", "--store"], "`cwbench speed --interference` is now `cwbench perf interference` and "
                                    "`cwbench speed --store` is now `cwbench perf store`: two tools"),
])
def test_the_old_tool_flags_say_where_the_tools_went(argv, said, capsys):
    assert cli(["speed", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + said) and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["perf", "interference", "--shapes", "b64"], ["perf", "interference", "--device",
                                  "cpu"], ["perf", "store", "--repeats", "2"], ["perf", "kernels", "--sizes", "20"]])
def test_a_tool_takes_only_its_own_options(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        cli(argv)
    assert stop.value.code == 2 and f"unrecognized arguments: {' '.join(argv[2:])}" in capsys.readouterr().err


def test_overhead_quick_run_writes_its_tables(tmp_path):
    assert cli(["perf", "overhead", "--quick", "--repeats", "1", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "overhead_quick_cpu.csv")
    steps = df[~df["shape"].isin(["profile", "profile stacked"])]
    assert set(steps["shape"]) == {"audio-1000", "copy"}
    assert set(steps.arch) == {"rnn", "cwrnn/exponential"}
    assert (steps.bare_ms > 0).all() and (steps.suite_ms > 0).all() and (steps.status == "ok").all()
    assert (steps.ratio == steps.suite_ms / steps.bare_ms).all()
    audio, copy = steps[steps["shape"] == "audio-1000"], steps[steps["shape"] == "copy"]
    assert (audio.stacked_runs == 5).all() and (audio.stacked_ms > 0).all()  # 1 seed x the 5 targets, stacked
    assert (audio.stacked_ratio == audio.stacked_ms / audio.bare_ms).all() and copy.stacked_ms.isna().all()
    profile = df[df["shape"] == "profile"].iloc[0]
    assert profile.runs == profile.ok == 5 and profile.wall_s > 0  # rnn at budget 100 on the 5 audio targets
    stacked = df[df["shape"] == "profile stacked"].iloc[0]
    assert stacked.runs == stacked.ok == 10 and stacked.seeds == 2  # 1 group: rnn budget 100, 2 seeds x 5 targets
    text = (tmp_path / "overhead_quick_cpu.md").read_text()
    assert "## Per step" in text and "## A whole profile" in text and "| copy | cwrnn/exponential |" in text
    assert "| group | stacked ms/run-step | stacked / bare | status |" in text and "| — | — | — | ok |" in text
    assert "`cwbench run audio --profile paper --seeds 1 --workers 2 --threads 1 --results <tmp>" in text
    assert "`cwbench run audio --profile paper --seeds 2 --workers 2 --threads 1 --results <tmp> --no-leaderboard " \
           "--allow-dirty --stack " in text and "with --stack, 10 runs at 2 seeds took" in text
    assert f"- command: cwbench perf overhead --quick --repeats 1 --out {tmp_path}\n" in text
