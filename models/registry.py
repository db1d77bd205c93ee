"""Architectures by name: how to build each, and its closed-form parameter count.

A model is described by a `ModelSpec` (the resolved size of one architecture); the
budget matcher in `bench` produces specs, `build_rnn` turns one into a module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from models.counting import clockwork_count, library_rnn_count, readout_count
from models.names import check_implementation

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    arch: str  # a key of ARCHITECTURES
    hidden_size: int  # total hidden units n
    schedule: str = ""  # CW-RNN only: the schedule spec the periods came from
    periods: tuple[int, ...] = field(default_factory=tuple)
    module_sizes: tuple[int, ...] = field(default_factory=tuple)
    offset: int = 0
    order: tuple[int, ...] = field(default_factory=tuple)  # connection order; empty = the periods

    @property
    def connection_order(self) -> tuple[int, ...]:
        return self.order or self.periods

    @property
    def label(self) -> str:
        """The name in tables: 'lstm', 'cwrnn/exponential', ..."""
        return f"{self.arch}/{self.schedule}" if self.schedule else self.arch

    def to_dict(self) -> dict:
        d = asdict(self)
        d["periods"], d["module_sizes"], d["order"] = list(self.periods), list(self.module_sizes), list(self.order)
        return d


def _library(cls_name: str):
    """Builder of models.library.<cls_name> (nn.RNN, nn.GRU with a compiled alternative) or,
    for the LSTM, torch.nn.LSTM itself; torch is imported when a model is built, so budget
    matching (closed_form_count) and the command line's checks run without it."""

    def build(spec, input_size, backend="auto"):
        if cls_name == "LSTM":
            from torch import nn

            return nn.LSTM(input_size, spec.hidden_size, batch_first=True)
        from models import library

        return getattr(library, cls_name)(input_size, spec.hidden_size, batch_first=True, backend=backend)

    return build


def _clockwork(spec: ModelSpec, input_size: int, backend: str = "auto"):
    from models.clockwork import ClockworkRNN

    return ClockworkRNN(input_size, list(spec.module_sizes), list(spec.periods), offset=spec.offset,
                        order=list(spec.connection_order), backend=backend)


# name -> builder(spec, input_size, backend) -> module with nn.RNN's calling convention;
# `backend` picks the implementation (models.names.IMPLEMENTATIONS). The names and their
# descriptions are in models/names.py, which the command line reads without torch.
ARCHITECTURES = {
    "rnn": _library("RNN"),
    "lstm": _library("LSTM"),
    "gru": _library("GRU"),
    "cwrnn": _clockwork,
}


def build_rnn(spec: ModelSpec, input_size: int, backend: str = "auto") -> nn.Module:
    """The recurrent layer of `spec`, on `backend`: "auto" (the fastest for the device and
    shape of each input) or one of the architecture's implementations."""
    check_implementation(spec.arch, backend)
    return ARCHITECTURES[spec.arch](spec, input_size, backend)


def implementation(rnn: nn.Module, x) -> str:
    """The name of the implementation that runs `rnn`'s recurrence on input x: the resolved
    backend of a CW-RNN, rnn or gru; "torch" for the LSTM (and any plain torch module)."""
    resolved = getattr(rnn, "resolved_backend", None)
    return resolved(x) if resolved is not None else "torch"


def freeze_input_weights(rnn: nn.Module) -> None:
    """For a task whose input is all zeros: the input weights can do nothing, so they are
    fixed at zero and left out of the trainable (and counted) parameters."""
    from torch import nn

    for name, p in rnn.named_parameters():
        if name.startswith("weight_ih"):
            p.requires_grad_(False)
            nn.init.zeros_(p)


def initialise(rnn: nn.Module, readout: nn.Module, std: float = 0.0, lstm_forget_bias: float | None = None,
               bias_init: str = "zeros"):
    """Optional paper-style initialisation: weights ~ N(0, std), biases 0 or, with
    bias_init "normal", drawn like the weights (std 0 keeps the library's default); an
    LSTM's forget-gate bias set high so it starts remembering.

    Zero biases leave a no-input network dead at the start: with h(-1) = 0 every state is
    tanh(0) = 0, so the recurrent and readout weights get no gradient until the biases
    have moved. Biases drawn like the weights (the paper's "all weights ~ N(0, 0.1)")
    avoid that."""
    import torch
    from torch import nn

    from models.clockwork import ClockworkRNN

    with torch.no_grad():
        if std:
            for module in (rnn, readout):
                for p in module.parameters():
                    if not p.requires_grad:
                        continue
                    if p.dim() > 1 or bias_init == "normal":
                        nn.init.normal_(p, 0.0, std)
                    else:
                        nn.init.zeros_(p)
            if isinstance(rnn, ClockworkRNN):
                rnn.weight_hh.mul_(rnn.mask)
        if lstm_forget_bias is not None and isinstance(rnn, nn.LSTM):
            h = rnn.hidden_size
            rnn.bias_ih_l0[h:2 * h] = lstm_forget_bias  # gate order i, f, g, o
            rnn.bias_hh_l0[h:2 * h] = 0.0


def closed_form_count(spec: ModelSpec, input_size: int, output_size: int) -> int:
    """Effective parameters of recurrent layer + linear readout, without building it."""
    if spec.arch == "cwrnn":
        recurrent = clockwork_count(input_size, spec.module_sizes, spec.connection_order)
    else:
        recurrent = library_rnn_count(spec.arch, input_size, spec.hidden_size)
    return recurrent + readout_count(spec.hidden_size, output_size)
