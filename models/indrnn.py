"""IndRNN (Li, Li, Cook, Zhu & Gao, CVPR 2018): h_t = relu(W x_t + u * h_{t-1} + b), u a vector,
so each unit reads only its own past. The worked example of adding an architecture: this
module plus one line in models/architectures.py.

The paper's recurrent-weight constraint: through T steps a unit's gradient is scaled by
u^(T-t) (where it is active), so |u| <= MAGNITUDE^(1/T) keeps it from growing beyond
MAGNITUDE (the authors' code: U_bound = MAG^(1/seq_len), MAG "2 or 10"). The authors clamp the
parameter in place (clip_weight) before each forward pass of their training loop; this module
does the same at the start of forward, with T the length of the input, and only when some |u|
exceeds the bound (so an unconstrained u is never written to). The recurrence then uses the
parameter itself, which gets its gradient as usual; a unit pushed past the bound comes back
to it on the next call.
"""

import math

import torch
from torch import nn

MAGNITUDE = 2.0  # the largest factor a gradient may grow by over the sequence


class IndRNN(nn.Module):
    """One IndRNN layer with torch.nn.RNN's calling convention (batch_first)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))  # named so freeze_input_weights finds it
        self.weight_hh = nn.Parameter(torch.empty(hidden_size))  # u
        self.bias = nn.Parameter(torch.empty(hidden_size))
        for p in self.parameters():  # nn.RNN's initialisation
            nn.init.uniform_(p, -1 / math.sqrt(hidden_size), 1 / math.sqrt(hidden_size))

    def constrain(self, steps: int) -> None:
        """|u| <= MAGNITUDE^(1/steps), the paper's bound for sequences of `steps` steps."""
        bound = MAGNITUDE ** (1 / max(steps, 1))
        if bool((self.weight_hh.abs() > bound).any()):
            with torch.no_grad():
                self.weight_hh.clamp_(-bound, bound)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        """x (B, T, I), h0 (1, B, n) or None -> outputs (B, T, n), h_T (1, B, n)."""
        self.constrain(x.shape[1])
        h = x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0[0]
        outputs = []
        for xw_t in nn.functional.linear(x, self.weight_ih, self.bias).unbind(1):
            h = torch.relu(xw_t + self.weight_hh * h)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h.unsqueeze(0)


def build(spec, input_size: int, backend: str = "auto") -> IndRNN:
    return IndRNN(input_size, spec.hidden_size)
