import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (wandb_offline, recurrence_checks) import by name


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models: two threads only add contention on a 2-core machine running two workers
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _sweeps_in_the_test_process(monkeypatch):
    # `cwbench run` would start a worker process per core for small models: seconds of
    # imports per test. Tests that are about workers ask for them (--workers N).
    monkeypatch.setattr("bench.sweep.launchers.default_workers", lambda jobs, device: 1)
