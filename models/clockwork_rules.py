"""The CW-RNN's rules, in one place: who reads whom, the connectivity mask, when each
module fires, and the recurrence written step by step (docs/cwrnn.md).

The module (models/clockwork.py) and every fast implementation of its recurrence
(models/backends.py) import these; this file imports neither, so models/ has no cycle.
"""

from __future__ import annotations

import torch


def reads(order, i: int, j: int) -> bool:
    """Does module i read module j's previous state? Itself and slower modules only
    (`order` is the periods, or the connection order that decouples them from the clock)."""
    return i == j or order[j] > order[i]


def module_reads(order) -> tuple[tuple[bool, ...], ...]:
    """reads[i][j] for every pair of modules."""
    g = len(order)
    return tuple(tuple(reads(order, i, j) for j in range(g)) for i in range(g))


def connectivity(module_sizes, order) -> torch.Tensor:
    """Unit-level mask M (n, n): M[u, v] = 1 iff unit u's module reads unit v's module."""
    g = len(module_sizes)
    blocks = [[torch.full((module_sizes[i], module_sizes[j]), float(reads(order, i, j))) for j in range(g)]
              for i in range(g)]
    return torch.cat([torch.cat(row, dim=1) for row in blocks], dim=0)


def firing_schedule(steps: int, unit_periods: torch.Tensor, offset: int) -> torch.Tensor:
    """Bool (steps, n): which units fire at which 0-based step."""
    t = torch.arange(steps, device=unit_periods.device).unsqueeze(1)
    return torch.remainder(t - offset, unit_periods.unsqueeze(0)) == 0


def reference_recurrence(xw, h, weight_hh, fires):
    """The equations, one step at a time: every module is computed, silent ones keep h.

    xw: (B, T, n) input projection plus bias; h: (B, n); fires: (T, n) bool.
    """
    outputs = []
    # unbind, not xw[:, t]: the backward of T selects would write T full-size zero tensors
    # (O(T^2) time and memory); unbind's backward is one stack
    for xw_t, fires_t in zip(xw.unbind(1), fires.unbind(0)):
        candidate = torch.tanh(xw_t + h @ weight_hh.T)
        h = torch.where(fires_t, candidate, h)
        outputs.append(h)
    return torch.stack(outputs, dim=1), h
