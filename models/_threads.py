"""Idle OpenMP threads spin for microseconds, not milliseconds: GOMP_SPINCOUNT=1000, set in
the environment before torch loads GNU OpenMP (which reads it once, when it loads).

torch's CPU kernels, and the compiled CW-RNN's loops (numba's OpenMP layer runs them on
torch's own OpenMP threads: models/backends.py, `numba_kernels`), run on GNU OpenMP, whose
idle threads by default spin 300,000 times (milliseconds) at every barrier and after every
parallel region before they sleep. With as many threads as cores and any other work on the
machine, spinning threads take the cores from the thread that has work, and every parallel
region waits for a thread that is not running. 1,000 spins (tens of microseconds) still
bridge the gaps between back-to-back parallel regions; a thread that waits longer sleeps.

Measured on 2 cores with 2 torch threads against the default and against never spinning
(docs/performance.md has the figures): on an idle machine 1,000 spins cost a few percent;
beside other work they save far more (a training run took about half the default's time),
and idle threads stop burning CPU between calls (tests/test_threads.py). Fewer spins cost
the idle case, more cost the busy one. `cwbench perf interference` measures training runs
with the setting in force (results/speed/interference_cpu.md).

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
