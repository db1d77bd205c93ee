"""The same tests for every entry of the architecture table (models/architectures.py), as
benchopt runs its tests on every solver: an architecture added as its module plus one
entry is tested here with nothing edited.

Each entry is built at a few of the sizes budget matching tries, and must: build on each of
its implementations (and run what it says); have a closed-form count equal to its built
module's effective trainable parameters, with and without frozen input weights; list its
candidate sizes in increasing count, so that the matcher may stop early; return outputs
(B, T, n) and states (1, B, n); be causal (outputs up to t do not depend on inputs after t);
pass a gradient to every counted parameter entry (these three are models/conformance.py's
checks, which also refuse a plugin that breaks them: tests/test_plugins.py); be counted the same
on torch's meta device as in closed form, and matched to the same size when the sizes are
searched with meta counts (how a plugin's budgets are met); and compute the same function
(outputs, final state and every gradient, float64) on every implementation.

And the committed results: re-matching every record of results/*/runs.jsonl from its
suite profile gives its recorded model and count, and with them its run id.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from bench.suite.budget import candidates, closest, match_budget
from models import conformance
from models.architectures import ARCHITECTURES
from models.backends import numba_available
from models.conformance import states
from models.counting import count_parameters, meta_count, readout_count, recurrent_count
from models.registry import build_rnn, closed_form_count, freeze_input_weights, implementation

ROOT = Path(__file__).resolve().parent.parent
# matching settings for the CW-RNN's sizes (g = 3 modules: periods 1, 2, 4, so a few steps fire them all)
MATCH = dict(cw_match="module_size", cw_modules=3, cw_module_size=1, offset=0)
SIZES = (0, 4, 11)  # which of the candidate sizes: the smallest, and two larger
IMPLEMENTATIONS = [(arch, name) for arch, entry in ARCHITECTURES.items() for name in entry.implementations]
OTHER_IMPLEMENTATIONS = [(arch, name) for arch, entry in ARCHITECTURES.items() for name in entry.implementations[1:]]
BATCH, STEPS, INPUTS = 3, 9, 4


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)  # agreement to 1e-10 needs double precision
    yield
    torch.set_default_dtype(torch.float32)


def spec(arch: str, index: int = 1):
    return next(itertools.islice(candidates(arch, **MATCH), index, None))


def build(arch: str, name: str, spec_=None, seed: int = 0):
    if name == "compiled" and not numba_available():
        pytest.skip("the compiled implementations need numba")
    torch.manual_seed(seed)
    return build_rnn(spec_ or spec(arch), INPUTS, name).double()


def run(module, x):
    """Outputs, final state(s) and the gradients of x and of every trainable parameter under a
    loss with random weights on every output and final state."""
    x = x.clone().requires_grad_()
    out, last = module(x)
    generator = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=generator)).sum() for t in (out, *states(last)))
    loss.backward()
    found = {"outputs": out, **{f"state {i}": t for i, t in enumerate(states(last))}, "grad x": x.grad}
    found.update({f"grad {n}": p.grad for n, p in module.named_parameters() if p.requires_grad})
    return found


@pytest.mark.parametrize("arch, name", IMPLEMENTATIONS)
def test_builds_and_runs_the_implementation_asked_for(arch, name):
    x = torch.zeros(1, 3, INPUTS)
    module = build(arch, name)
    assert module.hidden_size == spec(arch).hidden_size
    assert implementation(module, x) == name
    assert implementation(build_rnn(spec(arch), INPUTS), x) in ARCHITECTURES[arch].implementations  # auto


@pytest.mark.parametrize("index", SIZES)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_closed_form_count_is_the_trainable_numel(arch, index):
    s = spec(arch, index)
    for inputs in (1, 7):
        module = build_rnn(s, inputs)
        assert count_parameters(module) == recurrent_count(s, inputs)
        # a task whose input is all zeros (audio): input weights frozen, counted as 0 inputs
        freeze_input_weights(module)
        assert count_parameters(module) == recurrent_count(s, 0) < recurrent_count(s, inputs)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_candidates_grow_and_a_budget_among_them_is_met_exactly(arch):
    specs = list(itertools.islice(candidates(arch, **MATCH), 40))
    counts = [closed_form_count(s, 3, 2) for s in specs]
    assert counts == sorted(set(counts))  # strictly increasing: the matcher stops at the first over budget
    m = match_budget(arch, counts[20], 3, 2, tolerance=0.0, **MATCH)
    assert (m.spec, m.params) == (specs[20], counts[20])


@pytest.mark.parametrize("arch, name", IMPLEMENTATIONS)
def test_forward_shape(arch, name):
    module = build(arch, name, spec(arch, SIZES[-1]))
    conformance.check_shapes(module, module.hidden_size, BATCH, STEPS, INPUTS)  # the final state: the last output


@pytest.mark.parametrize("arch, name", IMPLEMENTATIONS)
def test_causal(arch, name):
    conformance.check_causal(build(arch, name), BATCH, STEPS, INPUTS)  # and the change is seen later


@pytest.mark.parametrize("arch, name", IMPLEMENTATIONS)
def test_gradient_reaches_every_counted_parameter(arch, name):
    # every entry but the structural zeros, in a batch of 16 (a relu unit can be off for a few rows)
    conformance.check_gradients(build(arch, name, spec(arch, SIZES[-1])), 16, STEPS, INPUTS)


@pytest.mark.parametrize("index", SIZES)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_meta_device_count_is_the_closed_form(arch, index):
    """What budgets of an architecture without a closed form (a plugin) are matched with."""
    s = spec(arch, index)
    for inputs in (0, 1, 7):  # 0: a zero-input task, input weights frozen
        assert meta_count(s, inputs) == recurrent_count(s, inputs)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_searching_sizes_by_meta_count_matches_what_the_closed_form_does(arch):
    inputs, outputs = 3, 2

    def count(s):
        return meta_count(s, inputs) + readout_count(s.hidden_size, outputs)

    for budget in (1, 40, 41, 97, 333, 1000, 2500, 4097):
        found = closest(candidates(arch, **MATCH), count, budget)
        m = match_budget(arch, budget, inputs, outputs, tolerance=1e9, **MATCH)
        assert (found.spec, found.params) == (m.spec, m.params), budget


@pytest.mark.parametrize("arch, name", OTHER_IMPLEMENTATIONS)
def test_implementations_agree(arch, name):
    first = ARCHITECTURES[arch].implementations[0]
    reference, other = build(arch, first), build(arch, name, seed=1)
    other.load_state_dict(reference.state_dict())
    x = torch.randn(BATCH, STEPS, INPUTS)
    expected, got = run(reference, x), run(other, x)
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-10, rtol=0, msg=lambda m, k=key: f"{k}: {m}")


def test_committed_records_rematch_to_their_model_count_and_run_id():
    """Every committed run's model and count are what matching its suite profile gives now,
    and its run id is the hash of its config with them: the registry changed no run."""
    from bench.suite.suites import _grid, counted_inputs, load_profile, load_suite, make_task, run_id, train_setting

    profiles, tasks, matched, checked = {}, {}, {}, 0
    for path in sorted(ROOT.glob("results/*/runs.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            where = record["task"], record["profile"]
            if where not in profiles:
                profiles[where] = profile = load_profile(load_suite(where[0]), where[1])
                made = (make_task(where[0], params) for params in _grid(profile.task_params))
                tasks[where] = {json.dumps(task.params(), sort_keys=True): task for task in made}
            params = json.dumps(record["task_params"], sort_keys=True)
            learn_h0 = train_setting(record["train"], "learn_h0")  # a learnable initial state is counted
            key = (*where, record["arch"], record["budget"], params, learn_h0)
            if key not in matched:
                task, m = tasks[where][params], profiles[where].match
                found = match_budget(record["arch"], record["budget"], counted_inputs(task), task.output_size,
                                     tolerance=m.tolerance, cw_match=m.cw_match, cw_modules=m.cw_modules,
                                     cw_module_size=m.cw_module_size, offset=m.offset, learn_h0=learn_h0)
                matched[key] = found.spec.to_dict(), found.params
            model, count = matched[key]
            assert (model, count) == (record["model"], record["params"]), key
            config = {k: record[k] for k in ("task", "profile", "task_params", "arch", "budget", "train", "seed")}
            assert run_id({**config, "model": model, "params": count}) == record["run_id"], key
            checked += 1
    assert checked > 0


def test_a_closed_form_is_arithmetic_in_h_and_i_only():
    from models.counting import formula

    assert formula("4 * (h * i + h * h + 2 * h)")(h=3, i=5) == 4 * (15 + 9 + 6)
    assert formula("h ** 2 - h // 2")(h=5, i=0) == 23
    for bad in ("__import__('os').getcwd()", "h * n", "h / 2", "len(h)"):
        with pytest.raises(ValueError, match="is not an integer, h, i or"):
            formula(bad)
