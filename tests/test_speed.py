"""The speed benchmark's plumbing on a tiny grid (no timing assertions: timings are for
bench/speed.py runs, never for tests)."""

import pandas as pd

from bench.speed import main

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
