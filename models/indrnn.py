"""IndRNN (Li, Li, Cook, Zhu & Gao, CVPR 2018): h_t = relu(W x_t + u * h_{t-1} + b), u a vector,
so each unit reads only its own past. The worked example of adding an architecture: this
module plus one line in models/architectures.py."""

import math

import torch
from torch import nn


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

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        """x (B, T, I), h0 (1, B, n) or None -> outputs (B, T, n), h_T (1, B, n)."""
        h = x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0[0]
        outputs = []
        for xw_t in nn.functional.linear(x, self.weight_ih, self.bias).unbind(1):
            h = torch.relu(xw_t + self.weight_hh * h)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h.unsqueeze(0)


def build(spec, input_size: int, backend: str = "auto") -> IndRNN:
    return IndRNN(input_size, spec.hidden_size)
