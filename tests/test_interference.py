"""`cwbench perf interference`'s plumbing: one real subprocess on the tiny settings and the
tables from made-up rows (no timing asserted). Its options: tests/test_speed.py, test_cli.py."""

from pathlib import Path

import pytest

from bench.perf import interference

needs_proc = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")


@needs_proc
def test_a_subprocess_trains_cwrnn_runs_then_the_lstm_and_reports_its_threads():
    pytest.importorskip("numba")
    row = interference.measure(2, 1, interference.QUICK["LSTM"], interference.QUICK["CWRNN"], timeout=600)
    assert row["lstm_status"] == "ok" and row["lstm_s"] > 0
    assert row["threads"] == row["torch_threads"] == 2 and row["cw_runs"] == 1 and row["cw_run_s"] > 0
    assert row["os_threads_after_lstm"] >= 2 and row["lstm_other_cpu_s"] >= 0 and row["idle_other_cpu_frac"] >= 0
    assert row["wait"]  # the OpenMP wait setting it ran with, or "(unset)"


def fake(threads, cw_runs, seconds, beside=0):
    return dict(beside=beside, threads=threads, cw_runs=cw_runs, lstm_s=seconds, lstm_status="ok",
                lstm_process_cpu_s=seconds, lstm_main_cpu_s=seconds, lstm_other_cpu_s=0.5 * (threads - 1),
                idle_other_cpu_frac=0.0,
                os_threads_before_lstm=4, os_threads_after_lstm=4 + threads, torch_threads=threads,
                cw_run_s=1.0 if cw_runs else None, wait="GOMP_SPINCOUNT=1000")


def test_summary_and_table():
    rows = [fake(1, 0, 6.0), fake(1, 3, 6.6), fake(1, 0, 8.0), fake(1, 3, 6.0), fake(1, 0, 7.0), fake(1, 3, 7.7),
            fake(2, 0, 10.0), fake(2, 3, 12.0), fake(2, 0, 30.0, beside=1), fake(2, 3, 15.0, beside=1)]
    summary = interference.summarise(rows)
    assert [(s["beside"], s["threads"]) for s in summary] == [(0, 1), (0, 2), (1, 2)]
    one, two, busy = summary
    assert busy["ratio"] == pytest.approx(0.5)
    assert one["repeats"] == 3 and one["fresh_s"] == 7.0 and one["after_s"] == 6.6
    assert one["ratio"] == pytest.approx(6.6 / 7.0) and one["fresh_range"] == "6.0-8.0"
    assert two["ratio"] == pytest.approx(1.2) and two["torch_threads_after"] == [2]
    runs = dict(lstm=interference.LSTM, cwrnn=interference.CWRNN, cw_runs=3)
    text = interference.markdown(summary, rows, {"date": "today", "command": "cwbench perf interference"}, runs)
    assert "| 0 | 2 | 1 | 10.0 | 12.0 | 1.20 |" in text and "| 1 | 2 | 1 | 30.0 | 15.0 | 0.50 |" in text
    assert "synthwords paper lstm budget 10000" in text and "- command: cwbench perf interference" in text


def test_the_csv_rows_carry_the_header_but_the_machine_leaves_the_thread_count_to_them(tmp_path):
    import json

    import pandas as pd

    from bench.perf.tables import cpu_header, write_tables

    header = cpu_header("cwbench perf interference --quick", 12.3, without=("torch_threads",))
    assert "torch_threads" not in json.loads(header["machine"]) and "cpu_model" in json.loads(header["machine"])
    assert header["wall time"] == "12 s" and header["command"] == "cwbench perf interference --quick"
    rows = [fake(1, 0, 6.0), fake(2, 3, 12.0)]
    write_tables(tmp_path / "interference_cpu", rows, header, "# the table\n")
    df = pd.read_csv(tmp_path / "interference_cpu.csv")
    assert list(df["torch_threads"]) == [1, 2] and list(df["lstm_s"]) == [6.0, 12.0]
    assert set(df["machine"]) == {header["machine"]} and set(df["cpu cores"]) == {header["cpu cores"]}
    assert (tmp_path / "interference_cpu.md").read_text() == "# the table\n"
