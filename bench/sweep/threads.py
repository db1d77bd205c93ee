"""How many threads a run uses, set in one way wherever a run trains (the driver, a local
worker, a Ray task, a SLURM job, a verify rerun): through the environment, so that OpenMP
and MKL pools started later (torch's, numba's) start with that many workers and no idle one
spins beside the working thread, and in torch itself once it is loaded."""

from __future__ import annotations

import os
import sys


def pin_threads(threads: int) -> None:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:  # else torch reads the environment when it loads
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
