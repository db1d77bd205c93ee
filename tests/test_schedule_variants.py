"""The schedule study's variants (models/schedules.py): `random:SEED`, and the options
@wiring, @start and @g that make each variant one label `cwrnn/<schedule>`.

The wiring is exact on every backend (float64 outputs and gradients equal the reference's to
1e-10, as tests/test_backends.py holds the paper's wiring), the mask is what the wiring says,
the count follows the mask, and budget matching records the variant in `model.schedule`
while every committed run's model (and so its run id) stays what it was.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.suite.budget import match_budget
from bench.suite.suites import load_profile, load_suite
from models.backends import compiled_plan
from models.clockwork import BACKENDS, ClockworkRNN
from models.clockwork_rules import module_reads, reads
from models.counting import clockwork_count, count_parameters
from models.errors import UserInputError
from models.names import parse_arch
from models.schedules import parse_schedule, periods_for, random_periods
from models.spec import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
WIRINGS = ["paper", "full", "reversed"]


# ---------------------------------------------------------------------------------------
# the spec


def test_options_are_parsed_and_a_plain_schedule_is_unchanged():
    assert parse_schedule("exponential@wiring=paper") == parse_schedule("exponential")  # the same model
    s = parse_schedule("exponential:3@wiring=full@start=1@g=4")
    assert (s.base, s.wiring, s.start, s.offset, s.modules) == ("exponential:3", "full", 1, -1, 4)
    assert periods_for("exponential:3@g=4", 9) == [1, 3, 9, 27]
    assert periods_for("exponential@wiring=reversed", 5) == [1, 2, 4, 8, 16]
    assert parse_arch("cwrnn/exponential@start=1") == ("cwrnn", "exponential@start=1")
    assert ModelSpec("cwrnn", 4, "dense@wiring=full").wiring == "full"
    assert ModelSpec("cwrnn", 4, "exponential").wiring == ModelSpec("cwrnn", 4).wiring == "paper"


@pytest.mark.parametrize("label, named", [
    ("cwrnn/exponential@wiring=diagonal", "bad wiring 'diagonal'"),
    ("cwrnn/exponential@offset=-1", "@start=S"),
    ("cwrnn/exponential@phase=1", "unknown option '@phase=1'"),
    ("cwrnn/exponential@start=one", "bad start 'one'"),
    ("cwrnn/exponential@g=0", "bad number of modules '@g=0'"),
    ("cwrnn/exponential@g=4@g=5", "option @g given twice"),
    ("cwrnn/random", "needs a seed"),
    ("cwrnn/random:x", "needs a seed"),
    ("cwrnn/1,2,4@g=4", "an explicit list fixes g"),
])
def test_a_bad_option_is_one_line_naming_it_and_the_fix(label, named):
    with pytest.raises(UserInputError, match="^[^\n]*$") as err:
        parse_arch(label)
    assert named in str(err.value)


def test_random_schedule_is_deterministic_distinct_sorted_and_starts_at_one():
    # the draw of numpy's default_rng(0), recorded: a change of the generator changes run ids
    assert random_periods(9, 0) == [1, 4, 20, 29, 34, 57, 91, 158, 179]
    assert periods_for("random:0", 9) == random_periods(9, 0)
    assert periods_for("random:0@g=4", 9) == random_periods(4, 0)
    for g in range(1, 12):
        for seed in range(5):
            periods = random_periods(g, seed)
            assert periods == sorted(set(periods)) and len(periods) == g and periods[0] == 1
            assert periods[-1] <= 2 ** (g - 1)
    assert random_periods(2, 3) == [1, 2]  # the only draw there is
    assert random_periods(9, 0) != random_periods(9, 1)


def test_random_draw_is_log_uniform():
    """Over many seeds, the drawn periods (2..256 at g = 9) fall below the geometric middle
    (16) about as often as above it: log-uniform, not uniform (which would put ~6% below)."""
    drawn = np.concatenate([random_periods(9, seed)[1:] for seed in range(300)])
    below = np.mean(drawn < 16)
    assert 0.35 < below < 0.65


# ---------------------------------------------------------------------------------------
# the wiring: mask, count, backends


def test_the_mask_is_what_the_wiring_says():
    order = [1, 2, 4]
    expected = {"paper": [[1, 1, 1], [0, 1, 1], [0, 0, 1]], "full": [[1, 1, 1]] * 3,
                "reversed": [[1, 0, 0], [1, 1, 0], [1, 1, 1]]}
    for wiring, table in expected.items():
        assert [[int(r) for r in row] for row in module_reads(order, wiring)] == table
        model = ClockworkRNN(2, [2, 1, 3], order, wiring=wiring)
        for i, (a, b) in enumerate([(0, 2), (2, 3), (3, 6)]):
            for j, (c, d) in enumerate([(0, 2), (2, 3), (3, 6)]):
                assert bool(model.mask[a:b, c:d].eq(1).all()) == bool(table[i][j])
                assert bool(model.mask[a:b, c:d].eq(0).all()) == (not table[i][j])


@pytest.mark.parametrize("wiring", WIRINGS)
def test_count_follows_the_wiring(wiring):
    sizes, order = [3, 2, 2, 1], [1, 2, 4, 8]
    model = ClockworkRNN(5, sizes, order, wiring=wiring)
    assert count_parameters(model) == clockwork_count(5, sizes, order, wiring)
    n = sum(sizes)
    if wiring == "full":
        assert clockwork_count(5, sizes, order, wiring) == n * (5 + 1 + n)
    if wiring == "reversed":  # the transposed triangle: the same number of blocks, other sizes
        assert clockwork_count(5, sizes, order, wiring) == sum(
            k * (6 + sum(sizes[: i + 1])) for i, k in enumerate(sizes))


def test_budget_matching_records_the_variant_and_meets_the_budget_with_other_sizes():
    def match(label):
        return match_budget(label, 1000, 0, 1, tolerance=0.15, cw_modules=9)

    paper, full, rev = match("cwrnn/exponential"), match("cwrnn/exponential@wiring=full"), match(
        "cwrnn/exponential@wiring=reversed")
    assert full.spec.schedule == "exponential@wiring=full" and full.spec.wiring == "full"
    assert full.spec.label == "cwrnn/exponential@wiring=full"
    assert sum(full.spec.module_sizes) < sum(paper.spec.module_sizes)  # more blocks: smaller modules
    assert rev.spec.wiring == "reversed" and abs(rev.deviation) <= 0.15
    started = match("cwrnn/exponential@start=1")
    assert started.spec.offset == -1 and started.spec.periods == paper.spec.periods
    assert paper.spec.offset == 0
    g4 = match("cwrnn/exponential@g=4")
    assert g4.spec.periods == (1, 2, 4, 8) and len(g4.spec.module_sizes) == 4
    rnd = match("cwrnn/random:0")
    assert rnd.spec.periods == tuple(random_periods(9, 0)) and rnd.spec.schedule == "random:0"
    # everything a run needs is in its config: the spec rebuilt from it is the same spec
    for m in (full, rev, started, g4, rnd):
        rebuilt = ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.spec.to_dict().items()})
        assert rebuilt == m.spec and rebuilt.wiring == m.spec.wiring
    # a built layer has the count the matcher used
    from models.counting import freeze_input_weights
    from models.registry import closed_form_count

    for m in (paper, full, rev):
        layer = BUILD(m.spec, 1)
        freeze_input_weights(layer)
        assert count_parameters(layer) + sum(m.spec.module_sizes) + 1 == closed_form_count(m.spec, 0, 1)


def BUILD(spec, inputs):
    from models.clockwork import cwrnn_layer

    return cwrnn_layer(spec, inputs)


def test_start_and_the_profile_offset_are_given_in_one_place():
    with pytest.raises(UserInputError, match="give the start in one place"):
        match_budget("cwrnn/exponential@start=1", 1000, 0, 1, tolerance=0.15, cw_modules=9, offset=2)
    with pytest.raises(UserInputError, match="cw_match 'modules' varies g"):
        match_budget("cwrnn/exponential@g=3", 100, 0, 1, tolerance=0.5, cw_match="modules")


def case(rng: random.Random):
    """A schedule, order and offset of the kinds the study uses and worse."""
    g = rng.randint(1, 6)
    kind = rng.choice(["exponential", "random", "repeated", "non-divisible", "dense"])
    if kind == "exponential":
        periods = [2 ** i for i in range(g)]
    elif kind == "random":
        periods = random_periods(g, rng.randint(0, 99))
    elif kind == "repeated":
        periods = [rng.choice([1, 2, 3]) for _ in range(g)]
    elif kind == "non-divisible":
        periods = [rng.choice([1, 3, 5, 7]) for _ in range(g)]
    else:
        periods = [1] * g
    order = list(range(1, g + 1)) if kind == "dense" else None
    return dict(module_sizes=[rng.randint(1, 5) for _ in range(g)], periods=periods, order=order,
                offset=rng.choice([0, -1, 1, rng.randint(-9, 9)]), batch=rng.choice([1, 3, 6]),
                steps=rng.choice([1, 2, rng.randint(3, 30)]), input_size=rng.choice([0, 2]))


def run(c, backend, wiring, device="cpu"):
    """Outputs, final state and every gradient; every random number drawn on the CPU."""
    torch.manual_seed(0)
    model = ClockworkRNN(c["input_size"], c["module_sizes"], c["periods"], offset=c["offset"], order=c["order"],
                         backend=backend, wiring=wiring).double().to(device)
    x = torch.randn(c["batch"], c["steps"], c["input_size"], dtype=torch.float64).to(device).requires_grad_()
    h0 = torch.randn(1, c["batch"], model.hidden_size, dtype=torch.float64).to(device).requires_grad_()
    out, h_last = model(x, h0)
    loss = (out * torch.randn(out.shape, dtype=torch.float64).to(device)).sum() + (
        h_last * torch.randn(h_last.shape, dtype=torch.float64).to(device)).sum()
    loss.backward()
    return [t.cpu() for t in (out, h_last, model.weight_ih.grad, model.weight_hh.grad, model.bias.grad, x.grad,
                              h0.grad)]


@pytest.mark.parametrize("backend", ["modular", "compiled"])
@pytest.mark.parametrize("wiring", WIRINGS)
@pytest.mark.parametrize("seed", range(15))
def test_every_backend_computes_every_wiring_exactly(backend, wiring, seed):
    c = case(random.Random(seed))
    expected, got = run(c, "reference", wiring), run(c, backend, wiring)
    names = ["outputs", "h_last", "grad weight_ih", "grad weight_hh", "grad bias", "grad x", "grad h0"]
    for name, a, b in zip(names, got, expected):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=lambda m, n=name: f"{c} {n}: {m}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("wiring", WIRINGS)
@pytest.mark.parametrize("seed", range(8))
def test_modular_on_cuda_computes_every_wiring_exactly(wiring, seed):
    c = case(random.Random(seed))
    for a, b in zip(run(c, "modular", wiring, "cuda"), run(c, "reference", wiring)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("wiring", WIRINGS)
def test_the_study_shapes_on_every_backend(wiring):
    """exponential with t from 0 and from 1, and a random schedule, at the audio task's g = 9."""
    for periods, offset in (([2 ** i for i in range(9)], 0), ([2 ** i for i in range(9)], -1),
                            (random_periods(9, 0), 0)):
        c = dict(module_sizes=[3] * 9, periods=periods, order=None, offset=offset, batch=2, steps=300,
                 input_size=1)
        expected = run(c, "reference", wiring)
        for backend in ("modular", "compiled"):
            for a, b in zip(run(c, backend, wiring), expected):
                torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_masked_blocks_get_no_gradient_under_every_wiring():
    for wiring in WIRINGS:
        model = ClockworkRNN(2, [2, 2, 2], [1, 2, 4], wiring=wiring, backend="compiled").double()
        out, _ = model(torch.randn(3, 9, 2, dtype=torch.float64))
        out.sum().backward()
        assert model.weight_hh.grad[model.mask == 0].abs().sum() == 0
        assert model.weight_hh[model.mask == 0].abs().sum() == 0


def test_compiled_layout_keeps_the_paper_layout_and_shortens_the_reversed_reads():
    perm, (starts, stops, first, periods) = compiled_plan((2, 2, 2), (1, 2, 4), (1, 2, 4), 0, "paper")
    assert perm is None and list(first) == [0, 2, 4]
    perm, (starts, stops, first, periods) = compiled_plan((2, 2, 2), (1, 2, 4), (1, 2, 4), 0, "reversed")
    assert list(periods) == [4, 2, 1] and list(first) == [0, 2, 4]  # slowest first: each reads a suffix
    assert all(reads((1, 2, 4), 2, j, "reversed") for j in range(3))


def test_backends_registry_unchanged():
    assert sorted(BACKENDS) == ["compiled", "modular", "reference"]


# ---------------------------------------------------------------------------------------
# the committed results


def test_committed_records_have_plain_schedules_outside_the_study_and_round_trip():
    """Every committed record's spec rebuilt from the config gives the same dict (so the same run
    id: tests/test_architectures.py re-matches each from its profile and checks the id); outside
    the schedule study a model is a plain schedule with the paper's wiring unless its profile names
    the variant as an architecture (the long copy profile carries the study's best row), and where
    there is a variant the options say what the spec holds."""
    checked = 0
    for path in sorted(ROOT.glob("results/*/runs.jsonl")):
        suite = load_suite(path.parent.name)
        archs = {name: load_profile(suite, name).archs for name in suite["profiles"]}  # once per profile, not per record
        for line in path.read_text().splitlines():
            record = json.loads(line)
            model = record["model"]
            spec = ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in model.items()})
            assert spec.to_dict() == model
            if not spec.schedule:
                continue
            options = parse_schedule(spec.schedule)
            if record["profile"] != "schedules":
                assert record["arch"] in archs[record["profile"]], f"{record['arch']} is not an arch of its profile"
            if record["profile"] != "schedules" and "@" not in record["arch"]:
                assert "@" not in spec.schedule and spec.wiring == "paper" and options.offset is None
            elif "@wiring=" in spec.schedule:
                assert spec.wiring == spec.schedule.split("@wiring=")[1].split("@")[0]
            if "@start=1" in spec.schedule:
                assert spec.offset == -1
            checked += 1
    assert checked > 0
