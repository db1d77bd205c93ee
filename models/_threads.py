"""Idle OpenMP threads spin for microseconds, not milliseconds: GOMP_SPINCOUNT=1000, set in
the environment before torch loads GNU OpenMP (which reads it once, when it loads).

torch's CPU kernels, and the compiled CW-RNN's loops (numba's OpenMP layer runs them on
torch's own OpenMP threads: models/backends.py, `numba_kernels`), run on GNU OpenMP, whose
idle threads by default spin 300,000 times (~7 ms on a 2-core AMD EPYC) at every barrier and
after every parallel region before they sleep. With as many threads as cores and any other
work on the machine, spinning threads take the cores from the thread that has work, and
every parallel region waits for a thread that is not running. 1,000 spins (~25 us) still
bridge the gaps between back-to-back parallel regions; a thread that waits longer sleeps.

Measured on 2 cores with 2 torch threads, median of 3 interleaved runs (GOMP_SPINCOUNT
1,000 / OpenMP's default 300,000 / OMP_WAIT_POLICY=PASSIVE, which never spins):
- a synthwords paper LSTM run (batch 1, 10 epochs), machine otherwise idle: 2.3-2.4 / 2.2-2.3 /
  6.0 s (two sets of runs); beside one CPU-bound process: 4.1 / 8.5 / 2.8 s. For 30 epochs,
  amid other people's test suites (load 2-6): 6-503 s with the default, 7-37 s with 1,000
  (1 thread: 6-15 s; `cwbench speed --interference`);
- the compiled CW-RNN at B=64, T=512, n=256, fwd+bwd, idle: 77.6-79.1 / 76.2-76.4 / 78.4 ms;
  beside one CPU-bound process: 138 / 179 / 138 ms;
- in 5 ms waits after each compiled fwd+bwd, the threads other than the caller burn 59-107%
  of a core with the default, 0.1% with 1,000 (tests/test_threads.py).
Fewer spins cost the idle case (300: 3.4 s for that LSTM run), more cost the busy one
(10,000: 9.7 s).

A wait setting the environment already has (OMP_WAIT_POLICY, GOMP_SPINCOUNT, KMP_BLOCKTIME)
is kept: GOMP_SPINCOUNT=300000 restores GNU OpenMP's default. Other OpenMP runtimes (LLVM's,
Intel's) do not read GOMP_SPINCOUNT and keep their own defaults.
"""

from __future__ import annotations

import os

WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SPIN_COUNT = "1000"


def short_openmp_spin() -> None:
    """Ask GNU OpenMP for a short spin, unless the environment already chose a wait
    setting. Only a process that calls this before torch is imported gets it (so: `models`
    calls it when it is imported, and `bench` imports `models` first)."""
    if not any(name in os.environ for name in WAIT_SETTINGS):
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
