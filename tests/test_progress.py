"""The sweep's progress lines and summary: the same for every launcher (records arrive in any order)."""

from bench.sweep.progress import SweepProgress, duration


def record(status, value=None, reason="", wall=1.0):
    return {"status": status, "reason": reason, "metrics": {} if value is None else {"nmse": value},
            "primary_metric": "nmse", "learned": status == "ok", "wall_time_s": wall}


def test_lines_count_done_failures_and_time_left():
    said = []
    progress = SweepProgress(3, log=lambda line, **kw: said.append(line), bar=False)
    progress.finished("audio rnn budget=100 seed=0", record("ok", 0.5))
    progress.finished("audio rnn budget=100 seed=1", record("failed", reason="RuntimeError: boom"))
    progress.finished("audio rnn budget=100 seed=2", record("diverged", reason="nan loss"))
    assert said[0].startswith("[1/3] audio rnn budget=100 seed=0 ok nmse=0.5 [1.0s] | ETA ")
    assert said[1].startswith("[2/3] audio rnn budget=100 seed=1 failed (RuntimeError: boom) [1.0s] | ETA ")
    assert said[1].endswith(", 1 failed so far")
    assert said[2] == "[3/3] audio rnn budget=100 seed=2 diverged (nan loss) [1.0s] | 1 failed so far"
    summary = progress.summary(skipped=5, elsewhere=2).splitlines()
    assert summary[0].startswith("sweep: 3 of 3 runs trained (1 ok, 1 diverged, 1 failed) in ")
    assert summary[0].endswith("; 5 already in the store; 2 left to another sweep on this store")
    assert summary[1] == "  failed: audio rnn budget=100 seed=1: RuntimeError: boom"
    assert "retried by the next invocation" in summary[-1]


def test_durations_read_at_a_glance():
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]
