"""Idle OpenMP threads sleep instead of spinning: OMP_WAIT_POLICY=PASSIVE, set in the
environment before torch loads its OpenMP runtime (which reads it once, when it loads).

torch's CPU kernels, and the compiled CW-RNN's loops (numba's OpenMP layer runs them on
torch's own OpenMP threads: models/backends.py, `numba_kernels`), run on GNU OpenMP, whose
idle threads by default spin for about 300,000 iterations (~7 ms on a 2-core AMD EPYC) after
every parallel region before they sleep. With as many threads as cores and any other work on
the machine, the spinning threads take the cores from the thread that has work, and every
parallel region waits for a thread that is not running. Measured on 2 cores busy with other
work, 2 torch threads, spinning / passive:
- a synthwords paper LSTM run (`cwbench speed --interference`): 85-193 s / 8-12 s (1 thread: 6-11 s);
- the compiled CW-RNN, B=64 T=512 n=256, fwd+bwd: 245-270 ms / 141-149 ms;
- in 5 ms waits after each compiled fwd+bwd, the threads other than the caller burned 59-73% /
  0% of a core (tests/test_threads.py).

Whatever wait setting the environment already has (OMP_WAIT_POLICY, GOMP_SPINCOUNT,
KMP_BLOCKTIME) is kept: GOMP_SPINCOUNT=300000 restores GNU OpenMP's own default.
"""

from __future__ import annotations

import os

WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def passive_openmp() -> None:
    """Ask OpenMP for sleeping idle threads, unless the environment says otherwise. Only a
    process that calls this before torch is imported gets it (so: `models` and `bench`
    call it when they are imported, before they import torch)."""
    if not any(name in os.environ for name in WAIT_SETTINGS):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
