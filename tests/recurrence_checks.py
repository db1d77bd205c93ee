"""Checks that several test files run on the recurrences (imported by name: tests/conftest.py
puts tests/ on the path): the IndRNN's recurrent-weight constraint, and a computation under
one and two torch threads (the compiled kernels' results must not depend on the count)."""

import pytest
import torch


def indrnn_past_its_bound(module, dtype=torch.float32):
    """Sets the IndRNN `module`'s u to (1.5, -1.2, 0.5, 1.0) and runs it on x (2, 10, 3): the
    paper's bound for 10 steps is 2^(1/10), so the first two are clamped. Returns x, the
    outputs and that bound."""
    with torch.no_grad():
        module.weight_hh.copy_(torch.tensor([1.5, -1.2, 0.5, 1.0]))
    x = torch.randn(2, 10, 3, dtype=dtype)
    out, _ = module(x)
    return x, out, 2 ** (1 / 10)


def assert_clamped_under_inference_mode(module, x, bound):
    """A u pushed past the bound under inference mode (as in Lightning's validation loop) is
    clamped by the next call on x (10 steps) all the same."""
    with torch.inference_mode():
        with torch.no_grad():
            module.weight_hh[0] = 3.0
        module(x)
    assert float(module.weight_hh.detach()[0]) == pytest.approx(bound)


def on_one_and_two_threads(run):
    """[run() with torch on 1 thread, run() on 2 threads]; torch's thread count restored after.
    Also checks that each count is still torch's after the run: numba's OpenMP pool, which
    the compiled kernels start on torch's runtime, must not change it."""
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append(run())
            assert torch.get_num_threads() == count  # numba's OpenMP pool does not change torch's
    finally:
        torch.set_num_threads(threads)
    return results
