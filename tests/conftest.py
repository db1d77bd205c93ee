import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (wandb_offline) import by name


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models: two threads only add contention on a 2-core machine running two workers
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
