"""Every CW-RNN backend against the step-by-step reference: outputs, final state, gradients.

CPU checks are float64 to 1e-10. The CUDA checks run only where a GPU is present.
"""

import random

import numpy as np
import pytest
import torch
from recurrence_checks import on_one_and_two_threads

from models.backends import pick_backend
from models.clockwork import BACKENDS, ClockworkRNN
from models.errors import UserInputError

FAST = sorted(name for name in BACKENDS if name != "reference")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def no_tf32():
    """cuDNN runs float32 RNNs in TF32 by default on recent GPUs (10-bit mantissa, ~1e-3);
    float32 tolerance needs true float32 arithmetic."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def random_case(rng: random.Random):
    """A schedule of every kind the backends must handle, and a shape to run it on."""
    g = rng.randint(1, 6)
    kind = rng.choice(["sorted", "unsorted", "repeated", "non-divisible", "custom order"])
    if kind == "sorted":
        periods = sorted(rng.choice([1, 2, 4, 8, 16]) for _ in range(g))
    elif kind == "repeated":
        periods = [rng.choice([1, 2, 3]) for _ in range(g)]
    elif kind == "non-divisible":
        periods = [rng.choice([1, 3, 5, 7, 11]) for _ in range(g)]
    else:
        periods = [rng.randint(1, 9) for _ in range(g)]
    # a connection order other than the periods: the "dense" control and worse
    order = [rng.randint(1, 4) for _ in range(g)] if kind == "custom order" else None
    module_sizes = [rng.randint(1, 5) for _ in range(g)]
    offset = rng.choice([0, 1, -3, rng.randint(-20, 20)])
    steps = rng.choice([1, 2, max(periods) - 1 or 1, rng.randint(1, 40)])  # incl. shorter than a period
    return dict(module_sizes=module_sizes, periods=periods, order=order, offset=offset,
                batch=rng.choice([1, 3, 6, 37]), steps=steps, input_size=rng.choice([0, 2]))


def run(case, backend, device="cpu", dtype=torch.float64, seed=0, with_h0=True):
    """Outputs, final state and the gradients of every parameter and input."""
    torch.manual_seed(seed)
    model = ClockworkRNN(case["input_size"], case["module_sizes"], case["periods"], offset=case["offset"],
                         order=case["order"], backend=backend).to(device, dtype)
    # every random number is drawn on the CPU, so that all devices see the same ones
    x = torch.randn(case["batch"], case["steps"], case["input_size"]).to(device, dtype).requires_grad_()
    h0 = torch.randn(1, case["batch"], model.hidden_size).to(device, dtype).requires_grad_()
    out, h_last = model(x, h0 if with_h0 else None)
    # random weights on both outputs, so that every path of the gradient is exercised
    out_weight, last_weight = (torch.randn(t.shape).to(device, dtype) for t in (out, h_last))
    loss = (out * out_weight).sum() + (h_last * last_weight).sum()
    loss.backward()
    leaves = [model.weight_ih, model.weight_hh, model.bias, x] + ([h0] if with_h0 else [])
    # every backend gives every leaf a gradient, zero where nothing fires (as the reference does)
    missing = [name for name, p in zip(NAMES[2:], leaves) if p.grad is None]
    assert not missing, f"{backend}: no gradient for {missing}"
    return [out, h_last] + [p.grad for p in leaves]


NAMES = ["outputs", "h_last", "grad weight_ih", "grad weight_hh", "grad bias", "grad x", "grad h0"]


def assert_same(got, expected, atol, rtol=0.0):
    for name, a, b in zip(NAMES, got, expected):
        torch.testing.assert_close(a.cpu().to(b.dtype), b, atol=atol, rtol=rtol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("seed", range(60))
def test_backend_matches_reference(backend, seed):
    case = random_case(random.Random(seed))
    expected = run(case, "reference", seed=seed, with_h0=seed % 3 != 0)
    got = run(case, backend, seed=seed, with_h0=seed % 3 != 0)
    assert_same(got, expected, atol=1e-10)


PAPER_LIKE = [
    dict(module_sizes=[4] * 9, periods=[2**i for i in range(9)], order=None, offset=0, batch=1, steps=320,
         input_size=0),  # the audio task
    dict(module_sizes=[3] * 7, periods=[2**i for i in range(7)], order=None, offset=1, batch=4, steps=37,
         input_size=13),  # TIMIT-like, every module first firing at the second step
    dict(module_sizes=[2] * 4, periods=[1, 1, 1, 1], order=[1, 2, 3, 4], offset=0, batch=2, steps=9,
         input_size=3),  # the "dense" control
]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("case", PAPER_LIKE, ids=["audio", "timit", "dense"])
def test_backend_matches_reference_on_the_suites_shapes(backend, case):
    assert_same(run(case, backend), run(case, "reference"), atol=1e-10)


@pytest.mark.parametrize("backend", FAST)
def test_float32_and_inference(backend):
    case = PAPER_LIKE[1]
    assert_same(run(case, backend, dtype=torch.float32), run(case, "reference", dtype=torch.float32), atol=1e-5)
    # blocks of rows and of units, ragged last blocks, gradient chunks; against float64, where the float32
    # reference itself is 4e-5 off on weight gradients of size 1e2 (sums over 2220 steps)
    many_rows = dict(case, module_sizes=[6, 5, 4, 3, 9, 1, 7], batch=37, steps=60)
    assert_same(run(many_rows, backend, dtype=torch.float32), run(many_rows, "reference"), atol=1e-4, rtol=1e-5)
    model = ClockworkRNN(3, [2, 3], [1, 4], backend=backend)
    reference = ClockworkRNN(3, [2, 3], [1, 4], backend="reference")
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 11, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], reference(x)[0])


def test_dense_weights_round_trip_through_every_backend():
    torch.manual_seed(3)
    model = ClockworkRNN(2, [2, 3, 1], [4, 1, 2], backend="reference")
    x = torch.randn(2, 13, 2)
    expected = model(x)[0]
    for backend in FAST:
        other = ClockworkRNN(2, [2, 3, 1], [4, 1, 2], backend=backend)
        other.load_dense(*model.to_dense())
        torch.testing.assert_close(other(x)[0], expected, atol=1e-6, rtol=0)
        assert all(torch.equal(a, b) for a, b in zip(other.to_dense(), model.to_dense()))


def test_auto_picks_a_registered_backend():
    for shape in [(1, 320, 0), (16, 150, 13), (64, 512, 16)]:
        model = ClockworkRNN(shape[2], [4] * 8, [2**i for i in range(8)])
        assert pick_backend(model, torch.zeros(shape)) in BACKENDS
        assert model.resolved_backend(torch.zeros(shape)) in BACKENDS
    half = ClockworkRNN(1, [2, 2], [1, 2]).to(torch.bfloat16)
    assert pick_backend(half, torch.zeros(1, 3, 1, dtype=torch.bfloat16)) != "compiled"


def test_compiled_refuses_what_it_cannot_run():
    model = ClockworkRNN(1, [2, 2], [1, 2], backend="compiled").to(torch.bfloat16)
    with pytest.raises(UserInputError, match="'compiled' CW-RNN backend runs on CPU"):
        model(torch.zeros(1, 3, 1, dtype=torch.bfloat16))


@cuda
@pytest.mark.parametrize("backend", ["modular", "auto"])
@pytest.mark.parametrize("seed", range(12))
def test_cuda_float32_matches_cpu_float64_reference(backend, seed, no_tf32):
    case = random_case(random.Random(1000 + seed))
    expected = run(case, "reference", seed=seed)
    got = run(case, backend, device="cuda", dtype=torch.float32, seed=seed)
    assert_same(got, expected, atol=2e-4, rtol=2e-4)


@cuda
@pytest.mark.parametrize("seed", range(6))
def test_cuda_float64_matches_reference(seed):
    case = random_case(random.Random(2000 + seed))
    assert_same(run(case, "modular", device="cuda", seed=seed), run(case, "reference", seed=seed), atol=1e-10)


@cuda
def test_cuda_suites_shapes_and_big_batch(no_tf32):
    big = dict(module_sizes=[32] * 8, periods=[2**i for i in range(8)], order=None, offset=0, batch=64,
               steps=128, input_size=16)
    for case in PAPER_LIKE + [big]:
        expected = run(case, "reference")
        assert_same(run(case, "auto", device="cuda", dtype=torch.float32), expected, atol=1e-3, rtol=1e-3)


def test_compiled_float32_tanh_is_within_a_few_ulp():
    """float32 runs a rational tanh (models/_numba_kernels.py); float64 runs libm's."""
    pytest.importorskip("numba")
    from models import _numba_kernels as kernels

    x = np.concatenate([np.linspace(-12, 12, 400_001), 10.0 ** -np.linspace(1, 30, 3001)]).astype(np.float32)
    x = np.concatenate([x, -x])
    got = np.empty_like(x)
    kernels.tanh_float32(x, got)
    exact = np.tanh(x.astype(np.float64))
    ulp = np.abs(got - exact) / np.spacing(np.abs(exact).astype(np.float32))
    assert ulp.max() <= 8, f"{ulp.max()} ulp at x = {x[ulp.argmax()]}"
    assert np.abs(got).max() <= 1 and np.array_equal(np.sign(got), np.sign(x))
    special = np.array([np.nan, np.inf, -np.inf, 0.0], dtype=np.float32)
    kernels.tanh_float32(special, out := np.empty_like(special))
    assert np.isnan(out[0])  # a diverged run stays visible
    assert 1 - 1e-6 < out[1] <= 1 and -1 <= out[2] < -1 + 1e-6 and out[3] == 0


def test_compiled_kernel_does_not_depend_on_the_thread_count():
    """The compiled recurrence (forward and BPTT) gives bit-identical results with 1 and 2
    threads: its weight-gradient chunks follow blocks of rows, not threads, and are added in
    a fixed order. Only the recurrence is compared: torch's own matmuls around it (the input
    projection, the readout) may split their reductions by thread count on some CPUs, so
    whole-model gradients are bitwise the same only at the same thread count (README)."""
    pytest.importorskip("numba")
    case = dict(PAPER_LIKE[1], batch=45, steps=50)  # more blocks of rows than gradient chunks
    torch.manual_seed(0)
    module = ClockworkRNN(case["input_size"], case["module_sizes"], case["periods"], offset=case["offset"],
                         order=case["order"], backend="compiled")
    n, shape = module.hidden_size, (case["batch"], case["steps"], module.hidden_size)
    inputs = [torch.randn(shape), torch.randn(case["batch"], n), torch.randn(n, n) * module.mask]
    out_weight, last_weight = torch.randn(shape), torch.randn(case["batch"], n)

    def run():
        xw, h0, w = (t.clone().requires_grad_() for t in inputs)
        out, h_last = BACKENDS["compiled"](xw, h0, w, module.firing_schedule(case["steps"]), module)
        ((out * out_weight).sum() + (h_last * last_weight).sum()).backward()
        return [out, h_last, xw.grad, h0.grad, w.grad]

    results = on_one_and_two_threads(run)
    for name, a, b in zip(["outputs", "h_last", "grad xw", "grad h0", "grad weight_hh"], *results):
        assert torch.equal(a, b), name
