"""Effective parameter counts (closed form == built module) and budget matching; the tests every
architecture gets are in tests/test_architectures.py."""

import random

import pytest

from bench.suite.budget import match_budget, parse_arch
from models import UserInputError, build_rnn, closed_form_count, count_parameters, periods_for
from models.lightning import OptimConfig, SequenceModel
from models.registry import ModelSpec


class _Task:
    def __init__(self, output_size):
        self.output_size = output_size


@pytest.mark.parametrize("case", range(30))
def test_clockwork_closed_form_with_any_periods_equals_built_model(case):
    # every architecture's count at its budget sizes: tests/test_architectures.py; here a CW-RNN with
    # periods no schedule gives (ties, any order), readout included
    rng = random.Random(case)
    inputs, outputs = rng.randint(1, 13), rng.randint(1, 25)
    g = rng.randint(1, 7)
    periods = [rng.randint(1, 9) for _ in range(g)]
    sizes = [rng.randint(1, 6) for _ in range(g)]
    spec = ModelSpec("cwrnn", sum(sizes), "random", tuple(periods), tuple(sizes))
    model = SequenceModel(build_rnn(spec, inputs), _Task(outputs), OptimConfig())
    assert count_parameters(model) == closed_form_count(spec, inputs, outputs)


def test_paper_formula_for_equal_modules():
    # the paper's formula (docs/cwrnn.md): k^2 g(g+1)/2 + g k n_in + g k + (g k + 1) n_out for distinct periods
    for g, k, n_in, n_out in [(9, 1, 1, 1), (4, 3, 13, 25), (7, 5, 2, 3)]:
        spec = ModelSpec("cwrnn", g * k, "exponential", tuple(periods_for("exponential", g)), (k,) * g)
        paper = k * k * g * (g + 1) // 2 + g * k * n_in + g * k + (g * k + 1) * n_out
        assert closed_form_count(spec, n_in, n_out) == paper


def test_dense_schedule_is_connected_like_a_cwrnn():
    dense = match_budget("cwrnn/dense", 500, 1, 1, cw_modules=4).spec
    clocked = match_budget("cwrnn/exponential", 500, 1, 1, cw_modules=4).spec
    assert dense.periods == (1, 1, 1, 1) and dense.connection_order == (1, 2, 3, 4)
    assert dense.module_sizes == clocked.module_sizes
    assert closed_form_count(dense, 1, 1) == closed_form_count(clocked, 1, 1)


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru", "cwrnn/exponential", "cwrnn/fibonacci", "cwrnn/dense"])
def test_match_is_the_closest_size(arch):
    m = match_budget(arch, 3000, 10, 9, cw_modules=6)
    assert abs(m.deviation) <= 0.1 and m.params == closed_form_count(m.spec, 10, 9)
    if m.spec.arch != "cwrnn":  # neighbours are no closer
        for h in (m.spec.hidden_size - 1, m.spec.hidden_size + 1):
            other = closed_form_count(ModelSpec(m.spec.arch, h), 10, 9)
            assert abs(other - 3000) >= abs(m.params - 3000)


def test_cwrnn_fixed_k_varies_g():
    m = match_budget("cwrnn/exponential", 100, 1, 1, cw_match="modules", cw_module_size=1)
    # k = 1: g(g+1)/2 + 2g + (g + 1) = 100 exactly at g = 11
    assert m.spec.module_sizes == (1,) * 11 and m.params == 100


def test_explicit_periods_fix_g():
    m = match_budget("cwrnn/1,4,16", 500, 2, 2)
    assert m.spec.periods == (1, 4, 16)


def test_impossible_budget_is_an_error_not_a_substitution():
    with pytest.raises(UserInputError, match="budget 100 is impossible for lstm within 10%"):
        match_budget("lstm", 100, 1, 1)
    with pytest.raises(UserInputError, match="bad budget"):
        match_budget("rnn", 0, 1, 1)


@pytest.mark.parametrize("label, message", [
    ("transformer", "unknown architecture 'transformer'"),
    ("cwrnn/zigzag", "unknown schedule 'zigzag'"),
    ("lstm/exponential", "takes no schedule"),
    ("cwrnn/exponential:1", "bad exponential base"),
])
def test_bad_labels(label, message):
    with pytest.raises(UserInputError, match=message):
        parse_arch(label)


def test_schedules():
    assert periods_for("exponential", 5) == [1, 2, 4, 8, 16]
    assert periods_for("exponential:3", 3) == [1, 3, 9]
    assert periods_for("linear", 4) == [1, 2, 3, 4]
    assert periods_for("fibonacci", 6) == [1, 2, 3, 5, 8, 13]
    assert periods_for("dense", 3) == [1, 1, 1]
    assert periods_for("2,3,7", None) == [2, 3, 7]
    with pytest.raises(UserInputError, match="g must be an integer >= 1"):
        periods_for("linear", 0)
