"""Recurrent architectures, their parameter counts and the LightningModule.

`from models import ClockworkRNN` works, but the names are imported on first use: importing
`models.names` or `models.schedules` (what the command line needs) must not import torch.
"""

import importlib

from models._threads import short_openmp_spin

short_openmp_spin()  # before anything loads torch: idle OpenMP threads do not spin for ms (models/_threads.py)

_WHERE = {
    "ARCHITECTURES": "models.architectures", "Architecture": "models.architectures", "ModelSpec": "models.spec",
    "build_rnn": "models.registry",
    "closed_form_count": "models.registry", "ClockworkRNN": "models.clockwork",
    "count_parameters": "models.counting", "UserInputError": "models.errors",
    "SCHEDULES": "models.schedules", "periods_for": "models.schedules",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'models' has no attribute '{name}'")
    return getattr(importlib.import_module(_WHERE[name]), name)
