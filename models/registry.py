"""Building and counting a `ModelSpec`, whatever its architecture: both read the entry of
models/architectures.py (its builder and its closed-form count), so nothing here names one.

A model is described by a `ModelSpec` (the resolved size of one architecture); the
budget matcher in `bench` produces specs, `build_rnn` turns one into a module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.architectures import ARCHITECTURES, load
from models.counting import freeze_input_weights, initial_state_count, readout_count, recurrent_count
from models.names import check_implementation
from models.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ARCHITECTURES", "ModelSpec", "build_rnn", "closed_form_count", "freeze_input_weights", "implementation",
           "initialise"]


def build_rnn(spec: ModelSpec, input_size: int, backend: str = "auto") -> nn.Module:
    """The recurrent layer of `spec`, on `backend`: "auto" (the fastest for the device and
    shape of each input) or one of the architecture's implementations."""
    check_implementation(spec.arch, backend)
    return load(ARCHITECTURES[spec.arch].build)(spec, input_size, backend)


def implementation(rnn: nn.Module, x) -> str:
    """The name of the implementation that runs `rnn`'s recurrence on input x: the resolved
    backend of a CW-RNN, rnn or gru; "torch" for the LSTM (and any plain torch module)."""
    resolved = getattr(rnn, "resolved_backend", None)
    return resolved(x) if resolved is not None else "torch"


def initialise(rnn: nn.Module, readout: nn.Module, std: float = 0.0, lstm_forget_bias: float | None = None,
               bias_init: str = "zeros"):
    """Optional paper-style initialisation: weights ~ N(0, std), biases 0 or, with
    bias_init "normal", drawn like the weights (std 0 keeps the library's default); an
    LSTM's forget-gate bias set high so it starts remembering. The parameters a module names in
    its `own_initialisation` are left alone.

    Zero biases leave a no-input network dead at the start: with h(-1) = 0 every state is
    tanh(0) = 0, so the recurrent and readout weights get no gradient until the biases
    have moved. Biases drawn like the weights (the paper's "all weights ~ N(0, 0.1)")
    avoid that."""
    import torch
    from torch import nn

    from models.clockwork import ClockworkRNN

    with torch.no_grad():
        if std:
            # parameters that are not weights (a Phased LSTM's periods, an LRU's eigenvalues) keep
            # the initialisation their architecture's paper gives them
            own = {id(getattr(rnn, name)) for name in getattr(rnn, "own_initialisation", ())}
            for module in (rnn, readout):
                for p in module.parameters():
                    if not p.requires_grad or id(p) in own:
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


def closed_form_count(spec: ModelSpec, input_size: int, output_size: int, learn_h0: bool = False) -> int:
    """Effective parameters of recurrent layer + linear readout (+ a learnable initial state
    with `learn_h0`), without building it."""
    state = initial_state_count(spec) if learn_h0 else 0
    return recurrent_count(spec, input_size) + readout_count(spec.hidden_size, output_size) + state
