"""A recurrent cell from outside the repository, as a plugin (docs/extending.md): a leaky tanh
RNN, each unit mixing its new value into its state at a learned rate,

    h_t = (1 - a) * h_{t-1} + a * tanh(W x_t + U h_{t-1} + b),    a = sigmoid(r) per unit,

written in torch's own RNN convention and nothing else: `cwbench run copy --include
examples/my_cell.py --archs my_cell` puts it beside the built-in architectures.
"""

import math

import torch
from torch import nn


class MyCell(nn.Module):
    """Leaky tanh RNN: h = (1 - a) h + a tanh(W x + U h + b), a learned per unit"""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        bound = 1 / math.sqrt(hidden_size)  # torch.nn.RNN's initialisation
        # named weight_ih: on a task whose input is all zeros the benchmark freezes it
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound))
        self.rate = nn.Parameter(torch.zeros(hidden_size))  # a = sigmoid(0) = 1/2 at the start

    def forward(self, x, h0=None):
        """x (batch, time, input), h0 (1, batch, hidden) or None -> outputs (batch, time, hidden), h_T."""
        h = x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0[0]
        a = torch.sigmoid(self.rate)
        outputs = []
        for xw_t in nn.functional.linear(x, self.weight_ih, self.bias).unbind(1):
            h = (1 - a) * h + a * torch.tanh(xw_t + h @ self.weight_hh.T)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h.unsqueeze(0)


ARCHITECTURES = {"my_cell": MyCell}
