"""Recurrent architectures, their parameter counts and the LightningModule."""

from models.clockwork import ClockworkRNN
from models.counting import count_parameters
from models.errors import UserInputError
from models.registry import ARCHITECTURES, ModelSpec, build_rnn, closed_form_count
from models.schedules import SCHEDULES, periods_for

__all__ = [
    "ARCHITECTURES", "SCHEDULES", "ClockworkRNN", "ModelSpec", "UserInputError",
    "build_rnn", "closed_form_count", "count_parameters", "periods_for",
]
