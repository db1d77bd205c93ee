"""ClockworkRNN against an independent, module-by-module reading of docs/cwrnn.md."""

import random

import pytest
import torch

from models import ClockworkRNN, UserInputError


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)  # equivalence to 1e-10 needs double precision
    yield
    torch.set_default_dtype(torch.float32)


def equations(x, weight_ih, weight_hh, bias, module_sizes, periods, offset, h0=None):
    """The CW-RNN of docs/cwrnn.md, written per module and per step with plain Python loops."""
    batch, steps, _ = x.shape
    starts = [sum(module_sizes[:i]) for i in range(len(module_sizes))]
    rows = [slice(s, s + k) for s, k in zip(starts, module_sizes)]
    h = [torch.zeros(batch, k) if h0 is None else h0[:, r] for k, r in zip(module_sizes, rows)]
    outputs = []
    for t in range(steps):
        new = []
        for i, r_i in enumerate(rows):
            if (t - offset) % periods[i] != 0:
                new.append(h[i])  # silent: keeps its state
                continue
            pre = x[:, t] @ weight_ih[r_i].T + bias[r_i]
            for j, r_j in enumerate(rows):
                if j == i or periods[j] > periods[i]:  # slow feeds fast, never the reverse
                    pre = pre + h[j] @ weight_hh[r_i, r_j].T
            new.append(torch.tanh(pre))
        h = new
        outputs.append(torch.cat(h, dim=1))
    return torch.stack(outputs, dim=1), torch.cat(h, dim=1)


def random_case(rng: random.Random):
    g = rng.randint(1, 6)
    periods = [rng.choice([1, 2, 3, 4, 5, 7, 8, 16]) for _ in range(g)]
    module_sizes = [rng.randint(1, 4) for _ in range(g)]
    return module_sizes, periods, rng.randint(0, 3), rng.choice([0, 1]), rng.randint(1, 3), rng.randint(1, 20)


@pytest.mark.parametrize("case", range(40))
def test_matches_the_equations(case):
    rng = random.Random(case)
    module_sizes, periods, input_size, offset, batch, steps = random_case(rng)
    input_size = max(input_size, 1)
    torch.manual_seed(case)
    model = ClockworkRNN(input_size, module_sizes, periods, offset=offset, backend="reference")
    x = torch.randn(batch, steps, input_size)
    h0 = torch.randn(1, batch, model.hidden_size) if case % 2 else None
    out, h_last = model(x, h0)
    w_ih, w_hh, b = model.to_dense()
    expected, expected_last = equations(x, w_ih, w_hh, b, module_sizes, periods, offset,
                                        None if h0 is None else h0[0])
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(h_last[0], expected_last, atol=1e-10, rtol=0)


@pytest.mark.parametrize("offset", [0, 1])
def test_both_offsets_fire_where_the_docs_say(offset):
    model = ClockworkRNN(1, [1, 1], [1, 3], offset=offset)
    model.load_dense(torch.ones(2, 1), torch.zeros(2, 2), torch.zeros(2))
    out, _ = model(0.2 * torch.arange(1.0, 8.0).reshape(1, 7, 1))  # a new value at every step
    slow = out[0, :, 1]
    changed = [t for t in range(7) if (t == 0 and slow[0] != 0) or (t > 0 and slow[t] != slow[t - 1])]
    assert changed == ([0, 3, 6] if offset == 0 else [1, 4])
    if offset == 1:
        assert slow[0] == 0  # h(-1) = 0 is kept until the module first fires


def test_silent_module_keeps_its_state_exactly():
    torch.manual_seed(0)
    model = ClockworkRNN(3, [2, 3], [1, 4])
    out, _ = model(torch.randn(2, 12, 3))
    slow = out[:, :, 2:]
    for t in range(12):
        if t % 4:
            assert torch.equal(slow[:, t], slow[:, t - 1])


def test_gradcheck():
    torch.manual_seed(1)
    model = ClockworkRNN(2, [2, 1, 2], [1, 2, 4], offset=0)
    x = torch.randn(2, 6, 2, requires_grad=True)
    h0 = torch.randn(1, 2, 5, requires_grad=True)
    weights = [p.detach().clone().requires_grad_() for p in (model.weight_ih, model.weight_hh, model.bias)]

    def f(x, h0, w_ih, w_hh, b):
        state = {"weight_ih": w_ih, "weight_hh": w_hh, "bias": b}
        return torch.func.functional_call(model, state, (x, h0))[0]

    assert torch.autograd.gradcheck(f, (x, h0, *weights))


def test_masked_weights_get_no_gradient_and_block_structure():
    model = ClockworkRNN(1, [2, 2, 2], [1, 2, 4])
    model(torch.randn(1, 9, 1))[0].sum().backward()
    below = torch.tril(torch.ones(6, 6), diagonal=-1)
    below[0:2, 0:2] = below[2:4, 2:4] = below[4:6, 4:6] = 0
    assert torch.all(model.mask[below.bool()] == 0)  # block upper-triangular: no fast -> slow
    assert torch.all(model.weight_hh.grad[model.mask == 0] == 0)


def test_dense_round_trip_ignores_entries_outside_the_pattern():
    a = ClockworkRNN(2, [1, 2], [2, 1])
    w_ih, w_hh, b = torch.randn(3, 2), torch.randn(3, 3), torch.randn(3)
    a.load_dense(w_ih, w_hh, b)
    got_ih, got_hh, got_b = a.to_dense()
    assert torch.equal(got_ih, w_ih) and torch.equal(got_b, b)
    assert torch.equal(got_hh, w_hh * a.mask)
    # module 0 (T=2) reads only itself; module 1 (T=1) reads module 0 (slower) and itself
    assert a.mask.tolist() == [[1, 0, 0], [1, 1, 1], [1, 1, 1]]


def test_equal_periods_do_not_read_each_other():
    # docs/cwrnn.md: i reads j iff j == i or T_j > T_i (strictly)
    assert ClockworkRNN(1, [1, 1], [2, 2]).mask.tolist() == [[1, 0], [0, 1]]


def test_order_decouples_connectivity_from_the_clock():
    dense = ClockworkRNN(1, [1, 1, 1], [1, 1, 1], order=[1, 2, 3])
    assert dense.mask.tolist() == [[1, 1, 1], [0, 1, 1], [0, 0, 1]]  # block-triangular, clocked at 1
    x = torch.randn(2, 5, 1)
    w_ih, w_hh, b = dense.to_dense()
    expected, _ = equations(x, w_ih, w_hh, b, [1, 1, 1], [1, 2, 3], 0)  # connectivity of periods 1,2,3 ...
    torch.testing.assert_close(dense(x)[0][:, :1], expected[:, :1], atol=1e-10, rtol=0)  # ... same fast module at t<2


@pytest.mark.parametrize("sizes, periods, message", [
    ([1], [0], "bad clock period 0"),
    ([1], [-2], "bad clock period -2"),
    ([1], [1.5], "bad clock period 1.5"),
    ([], [], "periods are empty"),
    ([1, 1], [1], "2 module sizes but 1 periods"),
    ([0], [1], "bad module size 0"),
])
def test_bad_configurations_are_named(sizes, periods, message):
    with pytest.raises(UserInputError, match=message):
        ClockworkRNN(1, sizes, periods)
