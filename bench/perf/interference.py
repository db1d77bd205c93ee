"""`cwbench perf interference` (`nox -s perf -- interference`): does a training run slow
down after other runs in the same process?

For torch thread counts 1 and 2 it times the same LSTM training run (a real
`bench.sweep.training.train_one`) in two kinds of fresh subprocess, interleaved repeat by repeat
so that drifts in machine load hit both alike:
- fresh: the LSTM run alone;
- after: a few CW-RNN runs on the compiled backend first (batch > 1, so that numba's
  parallel loops run, on torch's OpenMP threads), then the same LSTM run;
each on the machine as it is, and beside one CPU-bound process that this benchmark starts
(a busy machine: another sweep on the other core of two).
Each subprocess sets its thread count the way the sweeps do (OMP_NUM_THREADS and
MKL_NUM_THREADS before torch loads, then torch.set_num_threads) and reports, from
/proc/self/task, the process's thread count, the CPU time of the main thread and of all
other threads during the LSTM run, and the CPU time the other threads burn while the
process sleeps after the CW-RNN runs (a spinning thread shows up there at ~100%).

The medians and the ratio after / fresh go to <out>/interference_cpu.md and .csv
(committed: results/speed/interference_cpu.*). The OpenMP wait settings the subprocesses
ran with are in every row: the project shortens GNU OpenMP's spin (models/_threads.py);
set GOMP_SPINCOUNT=300000 (GNU OpenMP's own default) in the environment to measure
without that.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.perf.options import InterferenceOptions
from bench.perf.tables import cpu_header, header_lines, write_tables
from models._threads import WAIT_SETTINGS

# The LSTM run: the synthwords paper profile (batch 1, SGD with momentum, by epochs), the
# kind of run once seen to slow down after CW-RNN runs (docs/performance.md), for a
# fixed number of epochs (no early stopping: every repeat does the same work).
LSTM = dict(task="synthwords", profile="paper", arch="lstm", budget=10_000,
            train=dict(epochs=30, patience=0, lr=3e-4))
# The runs before it: synthwords quick CW-RNNs (batch 16: the compiled kernels' parallel
# loops run), fewer steps than the profile's 400.
CWRNN = dict(task="synthwords", profile="quick", arch="cwrnn/exponential", budget=10_000,
             train=dict(steps=150, val_every=50))
QUICK = dict(LSTM=dict(LSTM, train=dict(epochs=1, patience=0, lr=3e-4)),
             CWRNN=dict(CWRNN, train=dict(steps=20, val_every=10)))

IDLE_S = 0.3
TIMEOUT_S = 1800  # per subprocess: an LSTM run of about a minute once took over 8 (docs/performance.md)


# ---------------------------------------------------------------------------------------
# In the subprocess


def thread_times() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return found


def others_cpu(before: dict[int, float], after: dict[int, float], main: int) -> float:
    """CPU seconds that threads other than `main` used between the two samples."""
    return sum(t - before.get(tid, 0.0) for tid, t in after.items() if tid != main)


def one_run(spec: dict):
    """(config, task) of one run: the suite's profile with the spec's overrides, seed 0."""
    import dataclasses

    from bench.suite.suites import load_profile, load_suite, resolve

    profile = load_profile(load_suite(spec["task"]), spec["profile"])
    profile.archs, profile.budgets, profile.seeds = [spec["arch"]], [spec["budget"]], 1
    profile.train = dataclasses.replace(profile.train, **spec["train"])
    return resolve(spec["task"], spec["profile"], profile)[0]


def worker(threads: int, cw_runs: int, lstm: dict, cwrnn: dict) -> dict:
    from bench.sweep.threads import pin_threads

    pin_threads(threads)  # the environment first, before torch loads: as the sweeps do
    import torch

    from bench.sweep.training import train_one

    main = os.getpid()  # the main thread's id
    lstm_run, cw_run = one_run(lstm), one_run(cwrnn)
    cw_walls = []
    for _ in range(cw_runs):
        started = time.perf_counter()
        result = train_one(*cw_run, "cpu", backend="compiled")
        cw_walls.append(time.perf_counter() - started)
        assert result["backend"] == "compiled", result["backend"]
    before = thread_times()
    time.sleep(IDLE_S)
    idle = others_cpu(before, thread_times(), main) / IDLE_S
    threads_before = len(thread_times())
    before = thread_times()
    started, cpu = time.perf_counter(), time.process_time()
    result = train_one(*lstm_run, "cpu")
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    after = thread_times()
    return dict(threads=threads, cw_runs=cw_runs, lstm_s=wall, lstm_status=result["status"],
                lstm_process_cpu_s=cpu, lstm_main_cpu_s=after.get(main, 0.0) - before.get(main, 0.0),
                lstm_other_cpu_s=others_cpu(before, after, main), idle_other_cpu_frac=idle,
                os_threads_before_lstm=threads_before, os_threads_after_lstm=len(after),
                torch_threads=torch.get_num_threads(), cw_run_s=statistics.median(cw_walls) if cw_walls else None,
                wait=" ".join(f"{k}={os.environ[k]}" for k in WAIT_SETTINGS if k in os.environ) or "(unset)")


# ---------------------------------------------------------------------------------------
# In the parent


def measure(threads: int, cw_runs: int, lstm: dict, cwrnn: dict, timeout: float) -> dict:
    spec = json.dumps(dict(threads=threads, cw_runs=cw_runs, lstm=lstm, cwrnn=cwrnn))
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "bench.perf.interference", "worker", spec], capture_output=True,
                          text=True, env=env, cwd=repo, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"interference worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def busy_processes(count: int):
    """`count` CPU-bound processes running meanwhile: other work on the machine."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for beside, threads in sorted({(r["beside"], r["threads"]) for r in rows}):
        group = [r for r in rows if r["threads"] == threads and r["beside"] == beside]
        fresh = [r for r in group if r["cw_runs"] == 0]
        after = [r for r in group if r["cw_runs"] > 0]

        def med(group, key):
            return statistics.median(r[key] for r in group)

        out.append(dict(
            beside=beside, threads=threads, repeats=len(fresh), fresh_s=med(fresh, "lstm_s"),
            after_s=med(after, "lstm_s"),
            ratio=med(after, "lstm_s") / med(fresh, "lstm_s"),
            fresh_range=f"{min(r['lstm_s'] for r in fresh):.1f}-{max(r['lstm_s'] for r in fresh):.1f}",
            after_range=f"{min(r['lstm_s'] for r in after):.1f}-{max(r['lstm_s'] for r in after):.1f}",
            fresh_other_cpu_s=med(fresh, "lstm_other_cpu_s"), after_other_cpu_s=med(after, "lstm_other_cpu_s"),
            fresh_main_cpu_s=med(fresh, "lstm_main_cpu_s"), after_main_cpu_s=med(after, "lstm_main_cpu_s"),
            fresh_os_threads=med(fresh, "os_threads_after_lstm"), after_os_threads=med(after, "os_threads_after_lstm"),
            after_idle_other_cpu_frac=med(after, "idle_other_cpu_frac"),
            torch_threads_after=sorted({r["torch_threads"] for r in after}), cw_run_s=med(after, "cw_run_s"),
            wait=", ".join(sorted({r["wait"] for r in fresh + after})),
        ))
    return out


def markdown(summary: list[dict], rows: list[dict], header: dict, runs: dict) -> str:
    lines = header_lines("Interference: an LSTM run after CW-RNN runs in the same process (cpu)", header)
    lines += ["", "## Medians", "",
              "LSTM wall time in a fresh process (`fresh`) and after the CW-RNN runs in the same process "
              "(`after`); `other CPU`: CPU seconds used during the LSTM run by the process's threads other than "
              "the main one (torch's OpenMP workers: their work and their spinning); `idle`: what those threads "
              "burned while the process slept 0.3 s after the CW-RNN runs, as a fraction of that time; `busy "
              "processes beside`: CPU-bound processes this benchmark ran beside the measured one.", "",
              "| busy processes beside | torch threads | repeats | fresh s | after s | after / fresh | fresh range | "
              "after range | other CPU fresh s | other CPU after s | main CPU fresh s | main CPU after s | "
              "OS threads fresh | OS threads after | idle (after) | torch threads after | CW-RNN run s | OpenMP wait |",
              "|" + "---|" * 18]
    for s in summary:
        lines.append(
            f"| {s['beside']} | {s['threads']} | {s['repeats']} | {s['fresh_s']:.1f} | {s['after_s']:.1f} | "
            f"{s['ratio']:.2f} | "
            f"{s['fresh_range']} | {s['after_range']} | {s['fresh_other_cpu_s']:.1f} | {s['after_other_cpu_s']:.1f} | "
            f"{s['fresh_main_cpu_s']:.1f} | {s['after_main_cpu_s']:.1f} | {s['fresh_os_threads']:g} | "
            f"{s['after_os_threads']:g} | {s['after_idle_other_cpu_frac']:.0%} | "
            f"{', '.join(map(str, s['torch_threads_after']))} | {s['cw_run_s']:.1f} | {s['wait']} |")
    lines += ["", "## Every subprocess", "", "| busy processes beside | torch threads | kind | LSTM s | main CPU s | "
              "other CPU s | idle | OS threads | torch threads |", "|" + "---|" * 9]
    for r in rows:
        kind = f"after {r['cw_runs']} CW-RNN runs" if r["cw_runs"] else "fresh"
        lines.append(f"| {r['beside']} | {r['threads']} | {kind} | {r['lstm_s']:.1f} | {r['lstm_main_cpu_s']:.1f} | "
                     f"{r['lstm_other_cpu_s']:.1f} | {r['idle_other_cpu_frac']:.0%} | "
                     f"{r['os_threads_after_lstm']} | {r['torch_threads']} |")
    lines += ["", "## Notes", "",
              f"- LSTM run: {describe(runs['lstm'])}; before it, in `after`: {runs['cw_runs']} runs of "
              f"{describe(runs['cwrnn'])}, on the compiled backend.",
              "- Every measurement is its own subprocess; fresh and after alternate within each repeat, so that "
              "load from other work on the machine falls on both. Compare the ratio, not the seconds.",
              "- OpenMP wait: the OMP_WAIT_POLICY / GOMP_SPINCOUNT / KMP_BLOCKTIME the subprocesses saw (the "
              "project sets GOMP_SPINCOUNT=1000 when none is set: models/_threads.py; 300000 is GNU OpenMP's "
              "default)."]
    return "\n".join(lines) + "\n"


def describe(spec: dict) -> str:
    train = ", ".join(f"{k}={v}" for k, v in spec["train"].items())
    return f"{spec['task']} {spec['profile']} {spec['arch']} budget {spec['budget']} ({train})"


def run(options: InterferenceOptions) -> int:
    """Measure every setting `options.repeats` times and write the tables."""
    lstm, cwrnn = (QUICK["LSTM"], QUICK["CWRNN"]) if options.quick else (LSTM, CWRNN)
    cw_runs = 1 if options.quick else 3
    repeats = 1 if options.quick else options.repeats
    options.out.mkdir(parents=True, exist_ok=True)
    rows, started = [], time.perf_counter()
    for repeat in range(repeats):
        for beside in (0, 1):
            with busy_processes(beside):
                for threads in (1, 2):
                    # alternate which kind goes first, so that neither always follows the other
                    for cw in ((0, cw_runs) if repeat % 2 == 0 else (cw_runs, 0)):
                        row = measure(threads, cw, lstm, cwrnn, timeout=TIMEOUT_S)
                        rows.append(dict(row, repeat=repeat, beside=beside))
                        kind = f"after {cw} CW-RNN runs" if cw else "fresh"
                        print(f"  repeat {repeat + 1}/{repeats}, {beside} busy process(es) beside, {threads} "
                              f"thread(s), {kind}: LSTM {row['lstm_s']:.1f} s, other threads "
                              f"{row['lstm_other_cpu_s']:.1f} s CPU", flush=True)
    elapsed = time.perf_counter() - started
    summary = summarise(rows)
    header = cpu_header(options.command, elapsed, without=("torch_threads",))  # each row says its thread count
    stem = options.out / ("interference_quick_cpu" if options.quick else "interference_cpu")
    runs = dict(lstm=lstm, cwrnn=cwrnn, cw_runs=cw_runs)
    write_tables(stem, rows, header, markdown(summary, rows, header, runs))
    for s in summary:
        print(f"{s['beside']} busy process(es) beside, {s['threads']} thread(s): fresh {s['fresh_s']:.1f} s, "
              f"after {s['after_s']:.1f} s, after/fresh {s['ratio']:.2f}")
    print(f"wrote {stem}.md, .csv ({elapsed:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        spec = json.loads(sys.argv[2])
        print(json.dumps(worker(**spec)), flush=True)
        sys.exit(0)
    sys.exit("usage: cwbench perf interference (python -m bench.perf.interference worker SPEC: its subprocesses)")
