"""The four newer recurrences (models/phased_lstm.py, indrnn.py, mingru.py, lru.py) against
their papers: the Phased LSTM step by step against the paper's equations transcribed here;
the IndRNN's recurrent-weight constraint; minGRU's and the LRU's parallel scans against their
sequential forms in float32 (1e-5, gradients included); the public PyTorch implementations
where they are importable (skipped otherwise: mingru-pytorch, lru-pytorch, and
dannyneil/pytorch_plstm's plstm_cell.py on the path); and every suite budget met for each.
The generated conformance tests (tests/test_architectures.py) run on them too.
"""

from __future__ import annotations

import math

import pytest
import torch
from recurrence_checks import assert_clamped_under_inference_mode, indrnn_past_its_bound

from bench.suite.budget import match_budget
from bench.suite.suites import _grid, counted_inputs, load_profile, load_suite, make_task, suite_names
from models.lru import LRU, MAX_PHASE, R_MAX, R_MIN
from models.mingru import MinGRU
from models.phased_lstm import LEAK, PhasedLSTM
from models.registry import ModelSpec, build_rnn, initialise

NEW = ("phased_lstm", "indrnn", "mingru", "lru")


def grads(module, x, h0=None):
    """Outputs and the gradients of x and of every parameter under a loss with random weights."""
    x = x.clone().requires_grad_()
    out, _ = module(x, h0)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(out.dtype)
    (out * weights).sum().backward()
    return {"outputs": out, "grad x": x.grad, **{n: p.grad for n, p in module.named_parameters()}}


def assert_agree(a: dict, b: dict, atol: float, rtol: float = 0.0):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=atol, rtol=rtol, msg=lambda m, k=key: f"{k}: {m}")


# ---------------------------------------------------------------------------------------
# Phased LSTM


def paper_phased_lstm(m: PhasedLSTM, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Neil et al. 2016, eqs. (1)-(11) without peepholes, one unit and one step at a time."""
    n = m.hidden_size
    W, U, b = m.weight_ih.detach(), m.weight_hh.detach(), m.bias.detach()
    tau, s, r_on = m.period.detach().abs(), m.shift.detach(), float(m.open_ratio.detach().abs())

    def sigma(v):
        return 1 / (1 + math.exp(-v))

    out = torch.zeros(x.shape[0], x.shape[1], n, dtype=torch.float64)
    for batch in range(x.shape[0]):
        h, c = [0.0] * n, [0.0] * n
        for t in range(x.shape[1]):
            new_h, new_c = [], []
            for j in range(n):
                def gate(q, j=j, t=t, batch=batch, h=h):  # row q n + j of W x_t + U h_{t-1} + b (order i, f, g, o)
                    row = q * n + j
                    return float(W[row] @ x[batch, t].double() + sum(U[row, k] * h[k] for k in range(n)) + b[row])

                i_t, f_t, o_t = sigma(gate(0)), sigma(gate(1)), sigma(gate(3))
                c_tilde = f_t * c[j] + i_t * math.tanh(gate(2))
                h_tilde = o_t * math.tanh(c_tilde)
                phi = ((t - float(s[j])) % float(tau[j])) / float(tau[j])  # Python's % is the mathematical mod
                if phi < r_on / 2:
                    k = 2 * phi / r_on
                elif phi < r_on:
                    k = 2 - 2 * phi / r_on
                else:
                    k = alpha * phi
                new_c.append(k * c_tilde + (1 - k) * c[j])
                new_h.append(k * h_tilde + (1 - k) * h[j])
            h, c = new_h, new_c
            out[batch, t] = torch.tensor(h, dtype=torch.float64)
    return out


@pytest.mark.parametrize("training", [True, False])
def test_phased_lstm_is_the_papers_equations_step_by_step(training):
    torch.manual_seed(0)
    m = PhasedLSTM(3, 5).double().train(training)
    with torch.no_grad():  # short periods, so that over 30 steps every unit opens, closes and leaks
        m.period.copy_(torch.tensor([2.5, 3.0, 7.3, 11.0, 29.0]))
        m.shift.copy_(torch.rand(5) * m.period)
        m.open_ratio.fill_(0.3)
    x = torch.randn(2, 30, 3, dtype=torch.float64)
    expected = paper_phased_lstm(m, x, LEAK if training else 0.0)
    got, (h_last, c_last) = m(x)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_last[0], expected[:, -1], atol=1e-12, rtol=0)


def test_phased_lstm_initialisation_is_the_papers():
    torch.manual_seed(0)
    m = PhasedLSTM(2, 4000)
    assert m.period.min() >= 1 and m.period.max() <= 1000
    log_period = m.period.detach().log()  # log-uniform: uniform in log, mean log(1000) / 2
    assert abs(float(log_period.mean()) - math.log(1000) / 2) < 0.1
    assert (m.shift >= 0).all() and (m.shift <= m.period).all()
    assert float(m.open_ratio.detach()) == pytest.approx(0.05)


def test_phased_lstm_closed_units_keep_their_state_in_evaluation():
    torch.manual_seed(0)
    m = PhasedLSTM(3, 2).eval()
    with torch.no_grad():  # unit 0 half open at t = 0 (phi = 0.03) and closed after, unit 1 closed throughout
        m.period.copy_(torch.tensor([100.0, 100.0]))
        m.shift.copy_(torch.tensor([-3.0, 50.0]))
        m.open_ratio.fill_(0.04)
    out, _ = m(torch.randn(4, 10, 3))
    assert (out[:, :, 1] == 0).all()  # h_0 = 0 and k = 0: nothing enters
    assert (out[:, 1:, 0] == out[:, :1, 0]).all()  # written once at t = 0 (k = 0.5), then held


def test_phased_lstm_agrees_with_the_authors_pytorch_code():
    plstm_cell = pytest.importorskip("plstm_cell", reason="dannyneil/pytorch_plstm's plstm_cell.py is not on the path")
    torch.manual_seed(0)
    ours = PhasedLSTM(3, 6).train()  # the authors' code leaks always: compare in training mode
    theirs = plstm_cell.PLSTM(3, 6)
    with torch.no_grad():
        ours.period.copy_(torch.tensor([2.5, 3.0, 7.3, 11.0, 29.0, 400.0]))
        ours.shift.copy_(torch.rand(6) * ours.period)
        theirs.W.copy_(ours.weight_ih.T)
        theirs.U.copy_(ours.weight_hh.T)
        theirs.bias.copy_(ours.bias)
        theirs.Periods.copy_(ours.period[:, None])
        # theirs: phase (t + shift) mod tau; the paper's (t - s) mod tau is (t + tau - s) mod tau,
        # and tau - s >= 0 keeps torch.fmod from going negative
        theirs.Shifts.copy_((ours.period - ours.shift)[:, None])
        theirs.On_End.fill_(float(ours.open_ratio))
    x = torch.randn(4, 40, 3)
    got, _ = ours(x)
    expected, _ = theirs(x, torch.arange(40.0).expand(4, 40))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------
# IndRNN


def test_indrnn_clamps_its_recurrent_weights_to_the_papers_bound():
    torch.manual_seed(0)
    m = build_rnn(ModelSpec("indrnn", 4), 3)
    x, out, bound = indrnn_past_its_bound(m)
    torch.testing.assert_close(m.weight_hh.detach(), torch.tensor([bound, -bound, 0.5, 1.0]))
    h, expected = torch.zeros(2, 4), []
    for t in range(10):  # the recurrence with the clamped weights
        h = torch.relu(x[:, t] @ m.weight_ih.T + m.bias + m.weight_hh * h)
        expected.append(h)
    torch.testing.assert_close(out, torch.stack(expected, 1))
    assert_clamped_under_inference_mode(m, x, bound)


def test_indrnn_leaves_weights_within_the_bound_untouched():
    m = build_rnn(ModelSpec("indrnn", 4), 3)
    version = m.weight_hh._version
    out, _ = m(torch.randn(2, 50, 3))
    out.sum().backward()  # no in-place write: the graph stays valid
    assert m.weight_hh._version == version


# ---------------------------------------------------------------------------------------
# minGRU and LRU: the scan against the sequential form


@pytest.mark.parametrize("cls", [MinGRU, LRU])
@pytest.mark.parametrize("with_h0", [False, True])
def test_scan_and_sequential_agree_in_float32_with_gradients(cls, with_h0):
    torch.manual_seed(0)
    sequential, scan = cls(5, 16, "sequential"), cls(5, 16, "scan")
    scan.load_state_dict(sequential.state_dict())
    x = torch.randn(3, 300, 5)
    h0 = None
    if with_h0:
        _, h0 = sequential(torch.randn(3, 7, 5))
        h0 = tuple(t.detach() for t in h0) if isinstance(h0, tuple) else h0.detach()
    assert_agree(grads(sequential, x, h0), grads(scan, x, h0), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["indrnn", "mingru", "lru"])
def test_the_final_state_continues_the_sequence(arch):
    torch.manual_seed(0)
    m = build_rnn(ModelSpec(arch, 6), 3).double()
    x = torch.randn(2, 40, 3, dtype=torch.float64)
    whole, _ = m(x)
    first, state = m(x[:, :25])
    second, _ = m(x[:, 25:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-10, rtol=0)


@pytest.mark.parametrize("arch, batch, steps, device, expected", [
    ("mingru", 1, 8, "cpu", "compiled"), ("mingru", 1, 512, "cpu", "compiled"),  # on CPU the loop, compiled
    ("mingru", 1, 8, "meta", "sequential"), ("mingru", 1, 512, "meta", "scan"),  # off the CPU (meta: not a CPU)
    ("lru", 1, 8, "cpu", "sequential"), ("lru", 1, 512, "cpu", "scan"),
    ("lru", 200, 512, "cpu", "sequential"), ("lru", 200, 512, "meta", "scan")])  # batch x hidden 800 > SCAN_UP_TO
def test_auto_runs_the_scan_on_long_sequences(arch, batch, steps, device, expected):
    from models.backends import numba_available

    if expected == "compiled" and not numba_available():
        expected = "sequential"  # minGRU's loop in torch
    m = build_rnn(ModelSpec(arch, 4), 2)
    assert m.resolved_backend(torch.zeros(batch, steps, 2, device=device)) == expected


def test_mingru_with_no_input_relaxes_monotonically_to_a_constant():
    torch.manual_seed(0)
    m = MinGRU(1, 8, "sequential").double()
    with torch.no_grad():
        m.weight_ih.zero_()
        out, _ = m(torch.zeros(1, 300, 1, dtype=torch.float64))
    steps = out[0].diff(dim=0)
    assert ((steps >= -1e-15).all(dim=0) | (steps <= 1e-15).all(dim=0)).all()  # no unit turns back (but by rounding)
    b_h, b_z = m.bias.detach().chunk(2)
    target = torch.where(b_h >= 0, b_h + 0.5, torch.sigmoid(b_h))
    torch.testing.assert_close(out[0, -1], target * (1 - (1 - torch.sigmoid(b_z)) ** 300))


def test_lru_ring_initialisation_and_normalisation():
    torch.manual_seed(0)
    m = LRU(3, 2000)
    lam = torch.exp(m.log_lambda().detach())
    assert (lam.abs() >= R_MIN).all() and (lam.abs() <= R_MAX).all()
    assert (lam.angle().remainder(2 * math.pi) <= MAX_PHASE).all()
    # |lambda|^2 uniform on [r_min^2, r_max^2]: mean (r_min^2 + r_max^2) / 2
    assert abs(float((lam.abs() ** 2).mean()) - (R_MIN ** 2 + R_MAX ** 2) / 2) < 0.03
    torch.testing.assert_close(m.gamma_log.exp().detach(), (1 - lam.abs() ** 2).sqrt())
    out, _ = m(torch.zeros(2, 50, 3))  # linear: no input, no initial state, no output
    assert (out == 0).all()


# ---------------------------------------------------------------------------------------
# The public PyTorch implementations (test-only; skipped where not installed)


def test_mingru_agrees_with_mingru_pytorch():
    reference = pytest.importorskip("minGRU_pytorch", reason="mingru-pytorch is not installed")
    torch.manual_seed(0)
    theirs = reference.minGRU(6)  # expansion 1: hidden size = input size, no output projection
    ours = {name: MinGRU(6, 6, name) for name in ("sequential", "scan")}
    x = torch.randn(3, 64, 6)
    expected = theirs(x)
    for m in ours.values():
        with torch.no_grad():
            m.weight_ih.copy_(theirs.to_hidden_and_gate.weight)  # theirs: [hidden; gate], as ours
            m.bias.zero_()  # theirs has no biases
        torch.testing.assert_close(m(x)[0], expected, atol=1e-5, rtol=1e-5)


def test_lru_agrees_with_lru_pytorch():
    reference = pytest.importorskip("LRU_pytorch", reason="lru-pytorch is not installed")
    torch.manual_seed(0)
    theirs = reference.LRU(3, 5, 5)
    x = torch.randn(2, 30, 3)
    expected = theirs(x)
    for name in ("sequential", "scan"):
        m = LRU(3, 5, name)
        with torch.no_grad():
            for p in ("nu_log", "theta_log", "gamma_log"):
                getattr(m, p).copy_(getattr(theirs, p))
            m.weight_ih_re.copy_(theirs.B.real)
            m.weight_ih_im.copy_(theirs.B.imag)
            m.weight_out_re.copy_(theirs.C.real)
            m.weight_out_im.copy_(theirs.C.imag)
            m.weight_ih_skip.copy_(theirs.D)
        torch.testing.assert_close(m(x)[0], expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------
# Budgets and initialisation under the suites' protocols


def suite_budgets():
    """(suite, profile, counted inputs, outputs, budget, tolerance, match settings) of every
    budget any suite profile (or its tuning) trains at."""
    found = set()
    for name in suite_names():
        suite = load_suite(name)
        for profile_name in suite["profiles"]:
            profile = load_profile(suite, profile_name)
            budgets = set(profile.budgets) | ({profile.tune.budget} if profile.tune else set())
            for params in _grid(profile.task_params):
                task = make_task(name, params)
                for budget in budgets:
                    found.add((name, profile_name, counted_inputs(task), task.output_size, budget, profile.match))
    return sorted(found, key=repr)


@pytest.mark.parametrize("arch", NEW)
def test_every_suite_budget_is_met_within_its_tolerance(arch):
    checked = 0
    for suite, profile, inputs, outputs, budget, m in suite_budgets():
        found = match_budget(arch, budget, inputs, outputs, tolerance=m.tolerance, cw_match=m.cw_match,
                             cw_modules=m.cw_modules, cw_module_size=m.cw_module_size, offset=m.offset)
        assert abs(found.deviation) <= m.tolerance, (suite, profile, budget, found)
        checked += 1
    assert checked >= 9  # audio 100..1000, copy and words 10k, words 25k, 50k, ...


@pytest.mark.parametrize("arch, own", [("phased_lstm", ("period", "shift", "open_ratio")),
                                       ("lru", ("nu_log", "theta_log", "gamma_log"))])
def test_a_paper_style_reinitialisation_keeps_the_papers_own_parameters(arch, own):
    torch.manual_seed(0)
    m = build_rnn(ModelSpec(arch, 8), 2)
    before = {name: p.detach().clone() for name, p in m.named_parameters()}
    initialise(m, torch.nn.Linear(8, 1), std=0.1, bias_init="normal")
    for name, p in m.named_parameters():
        assert torch.equal(p, before[name]) == (name in own), name
