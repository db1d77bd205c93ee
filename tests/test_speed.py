"""The speed benchmark's plumbing on a tiny grid (no timing assertions: timings are for
bench/speed.py runs, never for tests)."""

import pandas as pd

from bench.cli import main as cli
from bench.perf.kernels import main

COLUMNS = {
    "device", "shape", "arch", "kernel", "label", "match", "hidden", "params", "fwd_ms", "fwdbwd_ms", "peak_mb",
    "fwd/rnn@hidden", "fwdbwd/rnn@hidden", "fwdbwd/lstm@budget", "fwdbwd/gru@budget", "peak/reference", "auto",
    "versions", "date", "threads",
}


def test_quick_run_writes_table_csv_and_plot(tmp_path):
    assert main(["--quick", "--device", "cpu", "--out", str(tmp_path), "--repeats", "1"]) == 0
    csv, md, png = (tmp_path / f"speed_quick_cpu.{ext}" for ext in ("csv", "md", "png"))
    assert md.exists() and png.stat().st_size > 0
    df = pd.read_csv(csv)
    assert COLUMNS <= set(df.columns)
    assert set(df.arch) == {"cwrnn", "rnn", "lstm", "gru"}
    assert {"reference", "modular"} <= set(df[df.arch == "cwrnn"].kernel)
    assert set(df[df.arch != "cwrnn"].match) == {"hidden", "budget"}
    assert (df.fwd_ms > 0).all() and (df.fwdbwd_ms > 0).all()
    text = md.read_text()
    assert "## Targets (issue 6)" in text and "torch" in text


def test_store_benchmark_writes_a_row_per_size(tmp_path, capsys):
    assert cli(["speed", "--store", "--sizes", "50", "20", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "store_cpu.csv")
    assert list(df.records) == [20, 50]
    assert (df.append_ms > 0).all() and (df.finished_ids_ms > 0).all() and (df.old_put_rewrite_s > 0).all()
    text = (tmp_path / "store_cpu.md").read_text()
    assert "append at 50 / append at 20 records = " in text and "command: cwbench speed --store" in text
    assert cli(["speed", "--sizes", "20"]) == 2
    assert "add --store or drop --sizes" in capsys.readouterr().err
