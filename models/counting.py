"""Effective parameter counts: measured on a built module, and in closed form.

The effective count is what the optimiser can usefully move: every trainable entry
except the structural zeros of a CW-RNN's masked recurrent blocks. Library modules
(nn.RNN/LSTM/GRU) are counted as built, two bias vectors per gate included, because
both are trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module is imported without torch (budget matching counts in closed form)
    from torch import nn

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def count_parameters(module: nn.Module) -> int:
    """Effective trainable parameters of any module tree (structural zeros excluded)."""
    total = sum(p.numel() for p in module.parameters() if p.requires_grad)
    zeros = sum(m.structural_zeros() for m in module.modules() if hasattr(m, "structural_zeros"))
    return total - zeros


def library_rnn_count(arch: str, input_size: int, hidden_size: int) -> int:
    """nn.RNN / nn.GRU / nn.LSTM with one layer: gates x (W_ih, W_hh, b_ih, b_hh)."""
    h = hidden_size
    return GATES[arch] * (h * input_size + h * h + 2 * h)


def clockwork_count(input_size: int, module_sizes, order) -> int:
    """sum_i k_i (I + 1 + sum_{j readable by i} k_j); j readable iff j == i or order_j > order_i
    (the order is the periods unless a schedule decouples connectivity from the clock)."""
    total = 0
    for i, k_i in enumerate(module_sizes):
        readable = sum(k_j for j, k_j in enumerate(module_sizes) if j == i or order[j] > order[i])
        total += k_i * (input_size + 1 + readable)
    return total


def readout_count(hidden_size: int, output_size: int) -> int:
    return hidden_size * output_size + output_size
