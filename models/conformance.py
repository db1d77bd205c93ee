"""The contract every recurrent layer keeps, as checks that say in one line what failed: the
outputs and final state have torch.nn.RNN's shapes (batch first), an output never depends on a
later input (causality), and a gradient reaches every counted parameter entry.

Shared by tests/test_architectures.py (every built-in architecture) and models/plugins.py
(every architecture from outside the repository, checked when it is loaded, before anything
trains). Each check raises `ConformanceError`; none knows where the module came from.
"""

from __future__ import annotations

import torch

from models.counting import count_parameters


class ConformanceError(Exception):
    """A layer breaks the contract: the message says which part, in one line."""


def states(second) -> tuple:
    """The final state(s): h_n, or (h_n, c_n) for an LSTM."""
    return second if isinstance(second, tuple) else (second,)


def forward(module, x, h0=None):
    """`module(x)` as the contract says: a pair (outputs, final state)."""
    found = module(x) if h0 is None else module(x, h0)
    if not isinstance(found, tuple) or len(found) != 2:
        raise ConformanceError(f"forward(x) returned {type(found).__name__}, not a pair (outputs, h_last)")
    return found


def check_shapes(module, hidden_size: int, batch: int = 3, steps: int = 9, inputs: int = 4) -> None:
    """outputs (B, T, n), each final state (1, B, n) like torch.nn.RNN's, the first being the last output."""
    out, last = forward(module, torch.randn(batch, steps, inputs))
    want = (batch, steps, hidden_size)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConformanceError(f"outputs have shape {got} for x of shape {(batch, steps, inputs)} and hidden size "
                               f"{hidden_size}: expected (batch, time, hidden) = {want} (batch first)")
    for state in states(last):
        if not isinstance(state, torch.Tensor) or tuple(state.shape) != (1, batch, hidden_size):
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise ConformanceError(f"h_last has shape {got}: expected (1, batch, hidden) = {(1, batch, hidden_size)}")
    if not torch.allclose(states(last)[0][0], out[:, -1]):
        raise ConformanceError("h_last is not the last step's output (outputs[:, -1])")


def check_causal(module, batch: int = 3, steps: int = 9, inputs: int = 4, atol: float = 1e-12) -> None:
    """Changing the inputs after step t leaves the outputs up to t as they were, and changes a later one."""
    x = torch.randn(batch, steps, inputs)
    for t in (0, steps // 2):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn(batch, steps - t - 1, inputs)
        with torch.no_grad():
            before, after = forward(module, x)[0], forward(module, changed)[0]
        if not torch.allclose(after[:, : t + 1], before[:, : t + 1], atol=atol, rtol=0):
            raise ConformanceError(f"not causal: changing the inputs after step {t} changed the outputs up to step "
                                   f"{t} (an output may depend only on inputs up to its own step)")
        if torch.allclose(after[:, t + 1:], before[:, t + 1:]):
            raise ConformanceError(f"the outputs after step {t} do not depend on the inputs after it")


def check_gradients(module, batch: int = 16, steps: int = 9, inputs: int = 4) -> None:
    """A loss with random weights on every output and final state gives a gradient to every
    trainable parameter and a non-zero one to every counted entry (structural zeros excepted).
    A larger batch: with a relu a unit can be off, or on only at t = 0, for a few rows."""
    x = torch.randn(batch, steps, inputs, requires_grad=True)
    out, last = forward(module, x)
    generator = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum() for t in (out, *states(last)))
    loss.backward()
    trainable = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    if not trainable:
        raise ConformanceError("it has no trainable parameters")
    missing = [name for name, p in trainable if p.grad is None]
    if missing:
        raise ConformanceError(f"no gradient reaches parameter(s) {', '.join(missing)}")
    reached = sum(int((p.grad != 0).sum()) for _, p in trainable)
    counted = count_parameters(module)
    if reached != counted:
        silent = [name for name, p in trainable if not bool((p.grad != 0).any())]
        where = f" (none in {', '.join(silent)})" if silent else ""
        raise ConformanceError(f"a gradient reaches {reached} of its {counted} counted parameter entries{where}")


def check_module(make, hidden_size: int, inputs: int = 4) -> None:
    """Every check on a module `make(inputs)` builds (float64, seeded), each on a fresh one."""
    for check, args in ((check_shapes, (hidden_size,)), (check_causal, ()), (check_gradients, ())):
        torch.manual_seed(0)
        check(make(inputs).double(), *args, inputs=inputs)
