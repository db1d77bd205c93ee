"""models/library.py: the rnn and gru on the compiled kernels against torch's nn.RNN and
nn.GRU with the same weights (outputs, final state, every gradient), and what `auto` picks.

float64 to 1e-12; float32 to 1e-5 (the compiled tanh is a rational function within a few
ulp). Tiny shapes, no timing.
"""

import numpy as np
import pytest
import torch
from recurrence_checks import on_one_and_two_threads
from torch import nn

from models import library
from models.errors import UserInputError
from models.library import GRU, RNN, pick_implementation
from models.registry import ModelSpec, build_rnn, freeze_input_weights, implementation

pytest.importorskip("numba")

MODULES = {"rnn": (RNN, nn.RNN), "gru": (GRU, nn.GRU)}


def pair(arch, input_size, hidden, dtype=torch.float64, seed=0, **options):
    """Ours on the compiled kernel, and torch's module with the same weights."""
    ours, theirs = MODULES[arch]
    torch.manual_seed(seed)
    compiled = ours(input_size, hidden, batch_first=True, backend="compiled", **options).to(dtype)
    reference = theirs(input_size, hidden, batch_first=True, **options).to(dtype)
    reference.load_state_dict(compiled.state_dict())
    return compiled, reference


def outputs_and_gradients(module, x, h0):
    """Outputs, final state, the gradients of the input, the initial state and every parameter,
    under a loss with random weights on both outputs (every path of the gradient exercised)."""
    x = x.clone().requires_grad_()
    h0 = None if h0 is None else h0.clone().requires_grad_()
    out, h_n = module(x, h0)
    generator = torch.Generator().manual_seed(1)
    out_weight, last_weight = (torch.randn(t.shape, generator=generator, dtype=t.dtype) for t in (out, h_n))
    ((out * out_weight).sum() + (h_n * last_weight).sum()).backward()
    grads = {name: p.grad for name, p in module.named_parameters() if p.requires_grad}
    found = {"outputs": out, "h_n": h_n, "grad x": x.grad, **{f"grad {k}": v for k, v in grads.items()}}
    if h0 is not None:
        found["grad h0"] = h0.grad
    return found


def assert_same(got, expected, atol, rtol=0.0):
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=atol, rtol=rtol,
                                   msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("arch", MODULES)
@pytest.mark.parametrize("batch, steps", [(1, 1), (1, 7), (5, 1), (5, 7)])  # 5: not a multiple of the block rows
@pytest.mark.parametrize("with_h0", [True, False])
def test_compiled_matches_torch_in_float64(arch, batch, steps, with_h0):
    compiled, reference = pair(arch, 3, 6)
    x = torch.randn(batch, steps, 3, dtype=torch.float64)
    h0 = torch.randn(1, batch, 6, dtype=torch.float64) if with_h0 else None
    assert_same(outputs_and_gradients(compiled, x, h0), outputs_and_gradients(reference, x, h0), atol=1e-12)


@pytest.mark.parametrize("arch", MODULES)
def test_compiled_matches_torch_with_more_rows_and_odd_sizes(arch):
    # several blocks of rows and gradient chunks, a ragged last block, an odd hidden size, no biases
    for options in ({}, {"bias": False}):
        compiled, reference = pair(arch, 4, 7, **options)
        x, h0 = torch.randn(37, 9, 4, dtype=torch.float64), torch.randn(1, 37, 7, dtype=torch.float64)
        assert_same(outputs_and_gradients(compiled, x, h0), outputs_and_gradients(reference, x, h0), atol=1e-12)


@pytest.mark.parametrize("arch", MODULES)
def test_zero_input_with_frozen_input_weights(arch):
    """The audio task: one always-zero input channel, its weights frozen at zero."""
    compiled, reference = pair(arch, 1, 5)
    for module in (compiled, reference):
        freeze_input_weights(module)
    x = torch.zeros(1, 40, 1, dtype=torch.float64)
    got, expected = outputs_and_gradients(compiled, x, None), outputs_and_gradients(reference, x, None)
    assert "grad weight_ih_l0" not in got
    assert_same(got, expected, atol=1e-12)


@pytest.mark.parametrize("arch", MODULES)
def test_float32_and_inference(arch):
    compiled, reference = pair(arch, 3, 9, dtype=torch.float32)
    x, h0 = torch.randn(6, 11, 3), torch.randn(1, 6, 9)
    assert_same(outputs_and_gradients(compiled, x, h0), outputs_and_gradients(reference, x, h0), atol=1e-5,
                rtol=1e-5)
    with torch.no_grad():
        for got, expected in zip(compiled(x), reference(x)):
            torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", MODULES)
def test_same_parameters_draws_and_state_dict_as_torch(arch):
    ours, theirs = MODULES[arch]
    torch.manual_seed(4)
    a = ours(3, 5, batch_first=True, backend="compiled")
    torch.manual_seed(4)
    b = theirs(3, 5, batch_first=True)
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.state_dict().keys() == b.state_dict().keys()
    assert isinstance(a, theirs) and "backend=compiled" in repr(a)


def recurrence(arch, module, inputs):
    """The compiled recurrence alone (no torch matmul around it), on `inputs` (xw, h0, weights...)."""
    if arch == "gru":
        return library.CompiledGRU.apply(*inputs)
    from models.backends import CompiledRecurrence, compiled_plan

    _, plan = compiled_plan((module.hidden_size,), (1,), (1,), 0)
    return CompiledRecurrence.apply(*inputs, plan, 0)


@pytest.mark.parametrize("arch", MODULES)
def test_compiled_kernel_does_not_depend_on_the_thread_count(arch):
    """Bit-identical outputs and gradients with 1 and 2 threads: the weight-gradient chunks follow
    blocks of rows, not threads, and are added in a fixed order (as tests/test_backends.py checks
    for the CW-RNN; only the recurrence is compared, torch's own matmuls may split by threads)."""
    batch, steps, n = 45, 13, 6  # more blocks of rows than gradient chunks
    gates = 3 if arch == "gru" else 1
    torch.manual_seed(0)
    inputs = [torch.randn(batch, steps, gates * n), torch.randn(batch, n), torch.randn(gates * n, n) * 0.5]
    if arch == "gru":
        inputs.append(torch.randn(n))  # b_hn
    out_weight, last_weight = torch.randn(batch, steps, n), torch.randn(batch, n)
    module = RNN(1, n)

    def run():
        leaves = [t.clone().requires_grad_() for t in inputs]
        out, h_last = recurrence(arch, module, leaves)
        ((out * out_weight).sum() + (h_last * last_weight).sum()).backward()
        return [out, h_last] + [t.grad for t in leaves]

    results = on_one_and_two_threads(run)
    for name, a, b in zip(["outputs", "h_last", "grad xw", "grad h0", "grad weight_hh", "grad b_hn"], *results):
        assert torch.equal(a, b), name


def test_float32_sigmoid_is_close_and_keeps_nan():
    from models import _numba_gru

    x = np.concatenate([np.linspace(-30, 30, 200_001), [-np.inf, np.inf, 0.0]]).astype(np.float32)
    got = np.empty_like(x)
    _numba_gru.sigmoid_float32(x, got)
    exact = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert np.abs(got - exact).max() < 1e-6 and got.min() >= 0 and got.max() <= 1
    special = np.array([np.nan], dtype=np.float32)
    _numba_gru.sigmoid_float32(special, out := np.empty_like(special))
    assert np.isnan(out[0])  # a diverged run stays visible


@pytest.mark.parametrize("arch", MODULES)
def test_auto_follows_the_rule_and_falls_back_to_torch(arch):
    ours, _ = MODULES[arch]
    module = ours(2, 16, batch_first=True)
    for shape in [(1, 320, 2), (16, 150, 2), (64, 60, 2)]:
        x = torch.zeros(shape)
        expected = pick_implementation(arch, "cpu", torch.float32, shape[0], 16, shape[1])
        assert module.resolved_backend(x) == expected == implementation(module, x)
    assert module.resolved_backend(torch.zeros(1, 320, 2)) == "compiled"  # the audio shape
    assert pick_implementation(arch, "cuda", torch.float32, 1, 16, 320) == "torch"
    assert module.to(torch.float16).resolved_backend(torch.zeros(1, 3, 2, dtype=torch.float16)) == "torch"
    assert module.resolved_backend(torch.zeros(1, 3, 2, device="meta", dtype=torch.float16)) == "torch"
    for unsupported in (ours(2, 4, batch_first=True, num_layers=2), ours(2, 4, batch_first=True, bidirectional=True),
                        ours(2, 4)):  # not batch_first
        assert unsupported.resolved_backend(torch.zeros(1, 3, 2)) == "torch"


@pytest.mark.parametrize("arch", MODULES)
def test_compiled_refuses_what_it_cannot_run(arch):
    ours, _ = MODULES[arch]
    cases = [(ours(2, 4, batch_first=True, backend="compiled").to(torch.bfloat16),
              torch.zeros(1, 3, 2, dtype=torch.bfloat16), "runs on CPU in float32/float64"),
             (ours(2, 4, batch_first=True, num_layers=2, backend="compiled"), torch.zeros(1, 3, 2), "one layer"),
             (ours(2, 4, backend="compiled"), torch.zeros(1, 3, 2), "batch_first=True"),
             (ours(2, 4, batch_first=True, backend="compiled"), torch.zeros(3, 2), "batched input")]
    if arch == "rnn":
        cases.append((ours(2, 4, batch_first=True, nonlinearity="relu", backend="compiled"), torch.zeros(1, 3, 2),
                      "tanh, not relu"))
    for module, x, message in cases:
        with pytest.raises(UserInputError, match=f"'compiled' {arch} implementation cannot run this: .*{message}"):
            module(x)
    with pytest.raises(UserInputError, match=f"unknown {arch} implementation 'modular': choose auto or one of "
                                             "torch, compiled"):
        ours(2, 4, backend="modular")


def test_build_rnn_refuses_another_architectures_implementation():
    # that each implementation builds and runs what it says: tests/test_architectures.py
    spec = {arch: ModelSpec(arch, 4) for arch in ("rnn", "lstm", "gru")}
    assert isinstance(build_rnn(spec["gru"], 3), nn.GRU) and isinstance(build_rnn(spec["lstm"], 3), nn.LSTM)
    with pytest.raises(UserInputError, match="unknown lstm implementation 'compiled': choose auto or one of torch$"):
        build_rnn(spec["lstm"], 3, "compiled")
    with pytest.raises(UserInputError, match="unknown rnn implementation 'modular': choose auto or one of torch, "
                                             "compiled"):
        build_rnn(spec["rnn"], 3, "modular")
