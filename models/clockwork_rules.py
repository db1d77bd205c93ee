"""The CW-RNN's rules, in one place: who reads whom, the connectivity mask, when each
module fires, and the recurrence written step by step (docs/cwrnn.md).

The module (models/clockwork.py) and every fast implementation of its recurrence
(models/backends.py) import these; this file imports neither, so models/ has no cycle.
torch is imported where a tensor is made, not above: the parameter count of budget matching
(models/counting.py) asks `reads` without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


WIRINGS = ("paper", "full", "reversed")  # the same names as models/schedules.py's @wiring


def reads(order, i: int, j: int, wiring: str = "paper") -> bool:
    """Does module i read module j's previous state? `order` is the periods, or the connection
    order that decouples the wiring from the clock.

    paper:    itself and slower modules (order_j > order_i): the paper's block-triangular W_H
    full:     every module (the clock kept, the triangular wiring dropped)
    reversed: itself and faster modules (order_j < order_i): the paper's triangle transposed
    """
    if wiring == "paper":
        return i == j or order[j] > order[i]
    if wiring == "full":
        return True
    if wiring == "reversed":
        return i == j or order[j] < order[i]
    raise ValueError(f"unknown wiring '{wiring}': one of {', '.join(WIRINGS)}")


def module_reads(order, wiring: str = "paper") -> tuple[tuple[bool, ...], ...]:
    """reads[i][j] for every pair of modules."""
    g = len(order)
    return tuple(tuple(reads(order, i, j, wiring) for j in range(g)) for i in range(g))


def connectivity(module_sizes, order, wiring: str = "paper") -> torch.Tensor:
    """Unit-level mask M (n, n): M[u, v] = 1 iff unit u's module reads unit v's module."""
    import torch

    g = len(module_sizes)
    blocks = [[torch.full((module_sizes[i], module_sizes[j]), float(reads(order, i, j, wiring))) for j in range(g)]
              for i in range(g)]
    return torch.cat([torch.cat(row, dim=1) for row in blocks], dim=0)


def firing_schedule(steps: int, unit_periods: torch.Tensor, offset: int) -> torch.Tensor:
    """Bool (steps, n): which units fire at which 0-based step."""
    import torch

    t = torch.arange(steps, device=unit_periods.device).unsqueeze(1)
    return torch.remainder(t - offset, unit_periods.unsqueeze(0)) == 0


def reference_recurrence(xw, h, weight_hh, fires):
    """The equations, one step at a time: every module is computed, silent ones keep h.

    xw: (B, T, n) input projection plus bias; h: (B, n); fires: (T, n) bool.
    """
    import torch

    outputs = []
    # unbind, not xw[:, t]: the backward of T selects would write T full-size zero tensors
    # (O(T^2) time and memory); unbind's backward is one stack
    for xw_t, fires_t in zip(xw.unbind(1), fires.unbind(0)):
        candidate = torch.tanh(xw_t + h @ weight_hh.T)
        h = torch.where(fires_t, candidate, h)
        outputs.append(h)
    return torch.stack(outputs, dim=1), h
