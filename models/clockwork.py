"""The Clockwork RNN (Koutník, Greff, Gomez & Schmidhuber, ICML 2014).

The hidden state h (n units) is split into g modules of sizes k_1..k_g with clock
periods T_1..T_g. At step t (0-based) module i fires iff (t - offset) mod T_i == 0:

    firing:  h_i(t) = tanh(W_I,i x(t) + b_i + sum_{j readable by i} W_H,ij h_j(t-1))
    silent:  h_i(t) = h_i(t-1)

Module i reads module j iff j == i or T_j > T_i: slow modules feed fast ones, never
the reverse. `order` can decouple this connection pattern from the clock (module i
reads j iff j == i or order_j > order_i); it defaults to the periods, as in the paper,
and exists for the "dense" control: every module clocked at 1, connected like a CW-RNN.
`wiring` replaces the paper's pattern for the schedule study: "full" (every module reads
every module) or "reversed" (itself and faster ones: order_j < order_i); the clock is kept.

The weights are stored dense, in the order of `module_sizes`, and the
structurally absent blocks of W_H are held at zero by a fixed mask; they are not
trainable parameters in any meaningful sense and `structural_zeros()` tells the
parameter counter to leave them out.

The rules themselves (who reads whom, the mask, the firing schedule, the step-by-step
recurrence) are in models/clockwork_rules.py, shared with the fast implementations of
models/backends.py; `backend` picks the implementation, and all compute the same
function of the same weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.backends import BACKENDS, pick_backend
from models.clockwork_rules import WIRINGS, connectivity, firing_schedule, module_reads
from models.errors import UserInputError
from models.schedules import validate_periods


class ClockworkRNN(nn.Module):
    """A CW-RNN with the torch.nn.RNN calling convention (batch_first)."""

    def __init__(self, input_size: int, module_sizes, periods, offset: int = 0, order=None, backend: str = "auto",
                 wiring: str = "paper"):
        super().__init__()
        periods = validate_periods(periods)
        order = list(periods) if order is None else list(order)
        if len(order) != len(periods):
            raise UserInputError(f"connection order {order} has {len(order)} entries for {len(periods)} modules")
        module_sizes = list(module_sizes)
        if len(module_sizes) != len(periods):
            raise UserInputError(
                f"{len(module_sizes)} module sizes but {len(periods)} periods: give one size per module"
            )
        for k in module_sizes:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise UserInputError(f"bad module size {k!r} in {module_sizes}: sizes must be integers >= 1")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise UserInputError(f"bad clock offset {offset!r}: the offset must be an integer")
        if wiring not in WIRINGS:
            raise UserInputError(f"unknown CW-RNN wiring '{wiring}': choose one of {', '.join(WIRINGS)}")
        if backend != "auto" and backend not in BACKENDS:
            raise UserInputError(f"unknown CW-RNN backend '{backend}': choose auto or one of {', '.join(BACKENDS)}")

        self.input_size = input_size
        self.module_sizes = module_sizes
        self.periods = periods
        self.order = order
        self.offset = offset
        self.wiring = wiring
        self.backend = backend
        self.hidden_size = n = sum(module_sizes)

        self.weight_ih = nn.Parameter(torch.empty(n, input_size))
        self.weight_hh = nn.Parameter(torch.empty(n, n))
        self.bias = nn.Parameter(torch.empty(n))
        self.register_buffer("mask", connectivity(module_sizes, order, wiring), persistent=False)
        # from Python lists, not repeat_interleave: the layer also builds on torch's meta device (counting)
        unit_periods = torch.tensor([p for p, k in zip(periods, module_sizes) for _ in range(k)])
        self.register_buffer("unit_periods", unit_periods, persistent=False)
        self._schedules: dict = {}
        self.reset_parameters()

    def reset_parameters(self):
        # nn.RNN's initialisation, so that architectures differ in structure, not in scale
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)
        with torch.no_grad():
            self.weight_hh.mul_(self.mask)

    def structural_zeros(self) -> int:
        # from the rules, not the mask's values: on torch's meta device (counting) a buffer has none
        reads = module_reads(self.order, self.wiring)
        sizes = self.module_sizes
        return self.hidden_size ** 2 - sum(sizes[i] * sizes[j] for i in range(len(sizes)) for j in range(len(sizes))
                                           if reads[i][j])

    def to_dense(self):
        """(weight_ih (n, I), weight_hh (n, n) with structural zeros, bias (n))."""
        weight_hh = self.weight_hh * self.mask
        return self.weight_ih.detach().clone(), weight_hh.detach().clone(), self.bias.detach().clone()

    @torch.no_grad()
    def load_dense(self, weight_ih, weight_hh, bias):
        """Load dense weights; entries outside the connection pattern are ignored."""
        self.weight_ih.copy_(weight_ih)
        self.weight_hh.copy_(weight_hh * self.mask.to(weight_hh.dtype))
        self.bias.copy_(bias)

    def resolved_backend(self, x: torch.Tensor) -> str:
        return self.backend if self.backend != "auto" else pick_backend(self, x)

    def firing_schedule(self, steps: int) -> torch.Tensor:
        """The (steps, n) schedule, built once per length and device: a training loop
        calls forward with the same length every step."""
        key = (steps, self.unit_periods.device)
        if key not in self._schedules:
            self._schedules[key] = firing_schedule(steps, self.unit_periods, self.offset)
        return self._schedules[key]

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        """x (B, T, I), h0 (1, B, n) or None -> outputs (B, T, n), h_T (1, B, n)."""
        batch, steps, _ = x.shape
        h = x.new_zeros(batch, self.hidden_size) if h0 is None else h0.reshape(batch, self.hidden_size)
        xw = nn.functional.linear(x, self.weight_ih, self.bias)
        fires = self.firing_schedule(steps)
        recurrence = BACKENDS[self.resolved_backend(x)]
        outputs, h_last = recurrence(xw, h, self.weight_hh * self.mask, fires, self)
        return outputs, h_last.unsqueeze(0)

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, module_sizes={self.module_sizes}, "
                f"periods={self.periods}, offset={self.offset}, order={self.order}, wiring={self.wiring}, "
                f"backend={self.backend}")


def cwrnn_layer(spec, input_size: int, backend: str = "auto") -> ClockworkRNN:
    """The builder of the architecture table's "cwrnn" (models/architectures.py)."""
    return ClockworkRNN(input_size, list(spec.module_sizes), list(spec.periods), offset=spec.offset,
                        order=list(spec.connection_order), backend=backend, wiring=spec.wiring)
