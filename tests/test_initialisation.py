"""The initialisations of models/initialisation.py (`--train init=NAME`) and the learnable initial
state (`--train learn_h0=true`): what each sets, checked by what the layer then does (a gate that
keeps the state keeps it) on every implementation of the architecture, and not only by index;
the settings as recorded in a run's config; the counts with a learnable state; the refusal of an
initialisation an architecture does not take.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from bench.arguments import task_param
from bench.suite.budget import candidates, match_budget
from bench.suite.suites import Profile, TrainConfig, counted_inputs, resolve
from models import plugins
from models.architectures import ARCHITECTURES, IGNORED, load
from models.backends import BACKENDS, numba_available
from models.clockwork import ClockworkRNN
from models.counting import count_parameters, initial_state_count
from models.errors import UserInputError
from models.initialisation import INITIALISATIONS, InitialState, initialise_family
from models.lightning import OptimConfig, SequenceModel
from models.registry import build_rnn, closed_form_count, freeze_input_weights
from models.spec import ModelSpec
from tasks.audio import AudioGeneration
from tasks.copy.task import CopyTask

MATCH = dict(cw_match="module_size", cw_modules=3, cw_module_size=1, offset=0)
GATED_IMPLEMENTATIONS = [("lstm", "torch"), ("gru", "torch"), ("gru", "compiled")]
ELMAN_IMPLEMENTATIONS = [("rnn", "torch"), ("rnn", "compiled"), *(("cwrnn", b) for b in BACKENDS)]
IMPLEMENTATIONS = [(arch, name) for arch, entry in ARCHITECTURES.items() for name in entry.implementations]
N = 6


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


class Horizon:
    """A task that says only its T_max (all an initialisation reads of a task)."""

    def __init__(self, steps: int):
        self.steps = steps

    def horizon(self) -> int:
        return self.steps


def layer(arch: str, backend: str = "auto", inputs: int = 3, seed: int = 0, spec: ModelSpec | None = None):
    if backend == "compiled" and not numba_available():
        pytest.skip("the compiled implementations need numba")
    torch.manual_seed(seed)
    if spec is None:
        spec = (ModelSpec(arch, N) if arch != "cwrnn"
                else ModelSpec("cwrnn", N, "custom", (1, 2, 4), (3, 2, 1)))  # modules of 3, 2 and 1 units
    return build_rnn(spec, inputs, backend)


def zeroed(rnn):
    with torch.no_grad():
        for p in rnn.parameters():
            p.zero_()
    return rnn


def state(arch: str, batch: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    parts = [torch.randn(1, batch, N, generator=generator) for _ in ARCHITECTURES[arch].state]
    return parts[0] if len(parts) == 1 else tuple(parts)


# ---------------------------------------------------------------------------------------------
# the registry and the refusal


def test_every_initialisation_an_entry_names_is_registered_and_default_comes_first():
    for arch, entry in ARCHITECTURES.items():
        assert entry.inits[0] == "default", arch
        for name in entry.inits:
            assert callable(load(INITIALISATIONS[name])), (arch, name)
    assert ARCHITECTURES["lstm"].inits == ARCHITECTURES["gru"].inits == ("default", "forget_bias", "chrono")
    assert ARCHITECTURES["rnn"].inits == ARCHITECTURES["cwrnn"].inits == ("default", "orthogonal", "identity")


def copy_profile(archs, **train) -> Profile:
    return Profile(archs=archs, budgets=[1000], seeds=2, task_params={"delay": 10},
                   train=TrainConfig(steps=2, val_every=2, **train))


def test_an_initialisation_the_architecture_does_not_take_is_refused_in_one_line():
    with pytest.raises(UserInputError) as err:
        resolve("copy", "quick", copy_profile(["lstm", "rnn"], init="chrono"))
    assert str(err.value) == ("init chrono does not apply to rnn: its initialisations are default, orthogonal, "
                              "identity (--train init=NAME)")
    with pytest.raises(UserInputError, match="^init orthogonal does not apply to lstm: its initialisations are "
                                             r"default, forget_bias, chrono \(--train init=NAME\)$"):
        resolve("copy", "quick", copy_profile(["cwrnn/exponential", "lstm"], init="orthogonal"))
    with pytest.raises(UserInputError, match="^init nope does not apply to mingru: its initialisations are "
                                             r"default \(--train init=NAME\)$"):
        resolve("copy", "quick", copy_profile(["mingru"], init="nope"))


def test_the_settings_are_in_a_runs_config_only_when_not_default():
    """--train init=chrono and learn_h0=true parse to a string and a bool, as a profile holds them."""
    assert task_param("init=chrono") == ("init", "chrono")
    assert task_param("learn_h0=true") == ("learn_h0", True) and task_param("learn_h0=false") == ("learn_h0", False)
    plain = resolve("copy", "quick", copy_profile(["lstm"]))
    assert all("init" not in c.train and "learn_h0" not in c.train for c, _ in plain)
    chrono = resolve("copy", "quick", copy_profile(["lstm"], init="chrono"))
    learned = resolve("copy", "quick", copy_profile(["lstm"], learn_h0=True))
    assert [c.train["init"] for c, _ in chrono] == ["chrono", "chrono"]
    assert [c.train["learn_h0"] for c, _ in learned] == [True, True]
    ids = [{c.run_id for c, _ in runs} for runs in (plain, chrono, learned)]
    assert len(set.union(*ids)) == 6  # each setting its own runs
    # the same settings, at their defaults, written out: the same runs as leaving them out
    explicit = resolve("copy", "quick", copy_profile(["lstm"], init="default", learn_h0=False))
    assert {c.run_id for c, _ in explicit} == ids[0]


def test_a_per_architecture_initialisation_applies_to_that_architecture_only():
    profile = dataclasses.replace(copy_profile(["lstm", "rnn"]), arch_train={"lstm": {"init": "chrono"},
                                                                             "rnn": {"init": "identity"}})
    inits = {c.arch: c.train["init"] for c, _ in resolve("copy", "quick", profile)}
    assert inits == {"lstm": "chrono", "rnn": "identity"}


# ---------------------------------------------------------------------------------------------
# default


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_default_changes_nothing_and_draws_nothing(arch):
    rnn = layer(arch)
    before = {k: v.clone() for k, v in rnn.state_dict().items()}
    generator_state = torch.get_rng_state()
    initialise_family("default", rnn, Horizon(100))
    assert torch.equal(torch.get_rng_state(), generator_state)
    assert all(torch.equal(v, before[k]) for k, v in rnn.state_dict().items())


# ---------------------------------------------------------------------------------------------
# the keep gate: forget_bias and chrono on the LSTM and the GRU


def changed_rows(before: dict, rnn) -> dict[str, list[int]]:
    """Per bias vector, the gates (blocks of N rows) whose values the initialisation changed."""
    return {name: sorted({int(i) // N for i in torch.nonzero(getattr(rnn, name) != before[name]).flatten()})
            for name in ("bias_ih_l0", "bias_hh_l0")}


def carried(arch: str, rnn, steps: int = 25):
    """The final state and the initial one of a run over random inputs."""
    h0 = state(arch, batch=4)
    x = torch.randn(4, steps, 3)
    with torch.no_grad():
        _, last = rnn(x, h0)
    return last, h0


@pytest.mark.parametrize("arch, backend", GATED_IMPLEMENTATIONS)
def test_forget_bias_opens_the_gate_that_keeps_the_state(arch, backend):
    rnn = layer(arch, backend)
    before = {k: v.clone() for k, v in rnn.state_dict().items()}
    initialise_family("forget_bias", rnn, Horizon(100))
    keep = slice(N, 2 * N)
    assert torch.equal(rnn.bias_ih_l0[keep] + rnn.bias_hh_l0[keep], torch.ones(N))  # the sum is exactly 1
    assert changed_rows(before, rnn) == {"bias_ih_l0": [1], "bias_hh_l0": [1]}
    assert all(torch.equal(v, before[k]) for k, v in rnn.state_dict().items() if not k.startswith("bias"))

    # by behaviour: zero weights, and the bias the initialisation set made huge -> the state is carried
    zeroed(rnn)
    initialise_family("forget_bias", rnn, Horizon(100))
    with torch.no_grad():
        rnn.bias_ih_l0.mul_(100.0)
    last, h0 = carried(arch, rnn)
    if arch == "lstm":  # c' = f c + i g with f = sigma(100) = 1, g = tanh(0) = 0: c kept, whatever i is
        torch.testing.assert_close(last[1], h0[1], atol=1e-12, rtol=0)
    else:  # h' = (1 - z) n + z h with z = sigma(100) = 1
        torch.testing.assert_close(last, h0, atol=1e-12, rtol=0)


@pytest.mark.parametrize("arch, backend", GATED_IMPLEMENTATIONS)
def test_chrono_draws_the_keep_bias_from_the_tasks_horizon(arch, backend):
    task = CopyTask(delay=100)
    assert task.horizon() == 120
    rnn = layer(arch, backend)
    before = {k: v.clone() for k, v in rnn.state_dict().items()}
    initialise_family("chrono", rnn, task)
    keep, inp = slice(N, 2 * N), slice(0, N)
    b_f = rnn.bias_ih_l0[keep]
    assert bool((b_f >= 0).all()) and bool((b_f <= math.log(119)).all())
    assert len(set(b_f.tolist())) == N  # one draw per unit
    assert torch.equal(rnn.bias_hh_l0[keep], torch.zeros(N))
    if arch == "lstm":
        assert torch.equal(rnn.bias_ih_l0[inp], -b_f) and torch.equal(rnn.bias_hh_l0[inp], torch.zeros(N))
        assert changed_rows(before, rnn) == {"bias_ih_l0": [0, 1], "bias_hh_l0": [0, 1]}
    else:  # the GRU's reset gate and candidate keep theirs
        assert changed_rows(before, rnn) == {"bias_ih_l0": [1], "bias_hh_l0": [1]}
    # reproducible per seed (torch's global generator, which a run seeds), and another seed differs
    drawn = []
    for seed in (0, 0, 7):
        again = layer(arch, backend)
        torch.manual_seed(seed)
        initialise_family("chrono", again, task)
        drawn.append(again.bias_ih_l0.detach().clone())
    assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[0], drawn[2])


@pytest.mark.parametrize("arch, backend", GATED_IMPLEMENTATIONS)
def test_chrono_with_a_long_horizon_keeps_the_state_and_shuts_the_input(arch, backend):
    """T_max = 1e9: b_f = log U(1, 1e9 - 1) is large for every unit, so f (z) is about 1 and,
    for the LSTM, i = sigma(-b_f) about 0: even with a candidate g = tanh(5) the cell is kept.
    With the input gate left open (i = 1/2), c would grow by about tanh(5)/2 a step."""
    rnn = zeroed(layer(arch, backend))
    torch.manual_seed(3)
    initialise_family("chrono", rnn, Horizon(10 ** 9))
    if arch == "lstm":
        with torch.no_grad():
            rnn.bias_ih_l0[2 * N:3 * N] = 5.0  # g
    last, h0 = carried(arch, rnn, steps=20)
    kept, start = (last[1], h0[1]) if arch == "lstm" else (last, h0)
    torch.testing.assert_close(kept, start, atol=1e-2, rtol=0)


def test_the_compiled_gru_reads_the_biases_chrono_sets():
    if not numba_available():
        pytest.skip("the compiled implementations need numba")
    torch_gru, compiled = layer("gru", "torch"), layer("gru", "compiled")
    for rnn in (torch_gru, compiled):
        torch.manual_seed(5)
        initialise_family("chrono", rnn, Horizon(50))
    x, h0 = torch.randn(3, 12, 3), state("gru", 3)
    out_torch, last_torch = torch_gru(x, h0)
    out_compiled, last_compiled = compiled(x, h0)
    torch.testing.assert_close(out_compiled, out_torch, atol=1e-10, rtol=0)


# ---------------------------------------------------------------------------------------------
# the recurrent matrix: orthogonal and identity on the tanh RNN and the CW-RNN


def recurrent(rnn) -> torch.Tensor:
    return rnn.weight_hh if isinstance(rnn, ClockworkRNN) else rnn.weight_hh_l0


def blocks(rnn) -> list[slice]:
    sizes = rnn.module_sizes if isinstance(rnn, ClockworkRNN) else [rnn.hidden_size]
    starts = list(itertools.accumulate([0, *sizes]))
    return [slice(a, b) for a, b in zip(starts, starts[1:])]


def step_by_step(rnn, x, h0) -> torch.Tensor:
    """The outputs the layer's own parameters give, written out: every unit that fires at t is
    tanh(W_ih x + b + W_hh h), every other one holds (the tanh RNN: all fire at every step)."""
    if isinstance(rnn, ClockworkRNN):
        w_ih, w_hh, b = rnn.weight_ih, rnn.weight_hh * rnn.mask, rnn.bias
        fires = rnn.firing_schedule(x.shape[1]).bool()
    else:
        w_ih, w_hh, b = rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0 + rnn.bias_hh_l0
        fires = torch.ones(x.shape[1], rnn.hidden_size, dtype=torch.bool)
    h, outputs = h0[0], []
    for t in range(x.shape[1]):
        h = torch.where(fires[t], torch.tanh(x[:, t] @ w_ih.T + b + h @ w_hh.T), h)
        outputs.append(h)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("arch, backend", ELMAN_IMPLEMENTATIONS)
def test_orthogonal_makes_each_modules_own_block_orthogonal_and_leaves_the_rest(arch, backend):
    rnn = layer(arch, backend)
    before = recurrent(rnn).detach().clone()
    others = {k: v.clone() for k, v in rnn.state_dict().items() if "weight_hh" not in k}
    initialise_family("orthogonal", rnn, Horizon(100))
    w = recurrent(rnn).detach()
    inside = torch.zeros_like(w, dtype=torch.bool)
    for rows in blocks(rnn):
        block = w[rows, rows]
        torch.testing.assert_close(block @ block.T, torch.eye(len(block)), atol=1e-6, rtol=0)
        inside[rows, rows] = True
    assert torch.equal(w[~inside], before[~inside])  # the blocks between modules as they were
    assert all(torch.equal(v, others[k]) for k, v in rnn.state_dict().items() if "weight_hh" not in k)
    if arch == "cwrnn":
        assert torch.equal(w * rnn.mask, w)  # no entry outside the connection pattern
        assert not torch.equal(w[~inside], torch.zeros_like(w[~inside]))  # and the ones inside it kept
    # what this implementation computes is what these parameters give
    x, h0 = torch.randn(2, 9, 3), torch.randn(1, 2, N)
    with torch.no_grad():
        torch.testing.assert_close(rnn(x, h0)[0], step_by_step(rnn, x, h0), atol=1e-10, rtol=0)


@pytest.mark.parametrize("arch, backend", ELMAN_IMPLEMENTATIONS)
def test_identity_copies_the_state_through_every_implementation(arch, backend):
    rnn = layer(arch, backend)
    initialise_family("identity", rnn, Horizon(100))
    w = recurrent(rnn).detach()
    assert torch.equal(w, torch.eye(N))
    assert all(not bool(p.any()) for name, p in rnn.named_parameters() if name.startswith("bias"))
    if arch == "cwrnn":
        assert torch.equal(w * rnn.mask, w)
    # by behaviour: with no input, every unit that fires applies tanh to its own state, and
    # nothing of another unit's (the CW-RNN's silent units hold theirs)
    steps, h0 = 9, torch.randn(1, 2, N)
    with torch.no_grad():
        outputs, _ = rnn(torch.zeros(2, steps, 3), h0)
    fires = (rnn.firing_schedule(steps).bool() if isinstance(rnn, ClockworkRNN)
             else torch.ones(steps, N, dtype=torch.bool))
    h, expected = h0[0], []
    for t in range(steps):
        h = torch.where(fires[t], torch.tanh(h), h)
        expected.append(h)
    torch.testing.assert_close(outputs, torch.stack(expected, dim=1), atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------
# the tasks' horizons


def test_each_task_says_its_longest_sequence():
    assert CopyTask(delay=100).horizon() == 120
    assert CopyTask(delay=50, variable_delay=True, min_delay=5).horizon() == 70  # the longest delay
    assert AudioGeneration(length=320).horizon() == 320
    assert AudioGeneration(length=1000).horizon() == 1000


def test_a_word_tasks_horizon_is_its_longest_training_word_for_tuning_too(tmp_path):
    from tasks.timit import TimitWords
    from tasks.timit.synth import write_synthetic_corpus

    corpus = write_synthetic_corpus(tmp_path / "corpus", seed=0, n_speakers=8)
    task = TimitWords(timit_root=corpus, cache_dir=tmp_path / "cache")
    longest = max(len(x) for x in task.prepare().train.sequences)
    assert task.horizon() == longest > 10
    assert task.for_tuning().horizon() == longest  # the same T_max as the runs it tunes


# ---------------------------------------------------------------------------------------------
# the learnable initial state


def sequence_model(arch: str, backend: str = "auto", inputs: int = 3, outputs: int = 2, spec=None):
    class Out:
        output_size = outputs

    rnn = layer(arch, backend, inputs, spec=spec)
    return SequenceModel(rnn, Out(), OptimConfig(), initial_state=InitialState.of(arch, rnn.hidden_size))


@pytest.mark.parametrize("arch, backend", IMPLEMENTATIONS)
def test_a_learnable_initial_state_gets_a_gradient_and_changes_the_output(arch, backend):
    model = sequence_model(arch, backend)
    learned = dict(model.initial_state.named_parameters())
    parts = ARCHITECTURES[arch].state
    assert sorted(learned) == sorted(f"{p}0" for p in parts if p != IGNORED)
    assert all(not bool(p.any()) for p in learned.values())  # zeros: a run starts where one without it does
    x = torch.randn(16, 9, 3)
    out = model(x)
    # zeros as h0 are what the layer does without one
    model_without = SequenceModel(model.rnn, type("Out", (), {"output_size": 2})(), OptimConfig())
    model_without.readout = model.readout
    torch.testing.assert_close(out, model_without(x), atol=1e-12, rtol=0)
    generator = torch.Generator().manual_seed(2)
    (out * torch.randn(out.shape, generator=generator)).sum().backward()
    for name, p in learned.items():
        assert p.grad is not None and bool((p.grad != 0).all()), (arch, name)
    with torch.no_grad():
        for p in learned.values():
            p.add_(torch.randn(p.shape, generator=generator))
        assert not torch.allclose(model(x), out)


def test_the_state_is_expanded_over_the_batch_in_the_layers_shape():
    assert InitialState(("h",), 4)(3).shape == (1, 3, 4)
    h, c = InitialState(("h", "c"), 4)(5)
    assert h.shape == c.shape == (1, 5, 4)
    y, re, im = InitialState((IGNORED, "re", "im"), 4)(2)
    assert not bool(y.any()) and re.shape == (1, 2, 4)
    with pytest.raises(ValueError, match="nothing to learn"):
        InitialState((IGNORED,), 4)


@pytest.mark.parametrize("index", (0, 5, 17))
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_learnable_state_is_counted_in_closed_form(arch, index):
    spec = next(itertools.islice(candidates(arch, **MATCH), index, None))
    for inputs in (0, 4):  # 0: a zero-input task (audio), its input weights frozen
        model = sequence_model(arch, inputs=max(inputs, 1), outputs=3, spec=spec)
        if inputs == 0:
            freeze_input_weights(model.rnn)
        with_state = closed_form_count(spec, inputs, 3, learn_h0=True)
        assert count_parameters(model) == with_state
        assert with_state == closed_form_count(spec, inputs, 3) + initial_state_count(spec)
        assert initial_state_count(spec) == spec.hidden_size * len(dict(model.initial_state.named_parameters()))


def test_a_plugins_learnable_state_is_counted_and_learned():
    from pathlib import Path

    from models import names

    saved = [(table, dict(table)) for table in (plugins.architectures.ARCHITECTURES, names.ARCHITECTURES,
                                                 names.IMPLEMENTATIONS, plugins.LOADED, plugins.OWNER)]
    try:
        plugins.load_all([Path(__file__).resolve().parent.parent / "examples" / "my_cell.py"])
        m = match_budget("my_cell", 500, 3, 2, tolerance=1.0, learn_h0=True)  # sizes searched by meta counts
        assert m.params == closed_form_count(m.spec, 3, 2) + m.spec.hidden_size  # h0: one vector of n
        model = sequence_model("my_cell", spec=m.spec)
        assert count_parameters(model) == m.params
        out = model(torch.randn(4, 5, 3))
        out.sum().backward()
        assert bool((model.initial_state.h0.grad != 0).any())
    finally:
        for table, contents in saved:
            table.clear()
            table.update(contents)


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru", "cwrnn/exponential", "cwrnn/dense"])
def test_audio_budgets_are_met_with_a_learnable_state_and_the_built_model_has_its_count(arch):
    """`cwbench run audio --train learn_h0=true`: the quick profile's budgets matched within its
    tolerance, and the model training builds has the count its config says (the check
    training.py makes before it trains). One budget cannot be met: the GRU's at 100, whose
    nearest sizes count 81 and 116 with the state (77 and 111 without), both more than 15% off."""
    from bench.suite.suites import load_profile, load_suite
    from bench.sweep.training import build_model

    profile = load_profile(load_suite("audio"), "quick")
    budgets = [b for b in profile.budgets if (arch, b) != ("gru", 100)]
    profile = dataclasses.replace(profile, archs=[arch], budgets=budgets, seeds=1,
                                  task_params={"target": "synth:pluck"},
                                  train=dataclasses.replace(profile.train, learn_h0=True))
    runs = resolve("audio", "quick", profile)
    assert len(runs) == len(budgets) == (3 if arch == "gru" else 4)
    for config, task in runs:
        assert abs(config.params - config.budget) <= profile.match.tolerance * config.budget
        assert config.train["learn_h0"] is True
        spec = ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.model.items()})
        assert config.params == closed_form_count(spec, counted_inputs(task), task.output_size, learn_h0=True)
        torch.set_default_dtype(torch.float32)
        model = build_model(config, task)
        assert count_parameters(model) == config.params and model.initial_state is not None
    if arch == "gru":
        with pytest.raises(UserInputError, match="^budget 100 is impossible for gru within 15%: the closest is 116 "):
            resolve("audio", "quick", dataclasses.replace(profile, budgets=[100]))


def test_build_model_applies_the_initialisation_with_the_tasks_horizon():
    from bench.sweep.training import build_model

    torch.set_default_dtype(torch.float32)
    (config, task), *_ = resolve("copy", "quick", copy_profile(["lstm"], init="chrono"))
    model = build_model(config, task)
    b_f = model.rnn.bias_ih_l0[model.rnn.hidden_size:2 * model.rnn.hidden_size]
    assert bool((b_f >= 0).all()) and bool((b_f <= math.log(task.horizon() - 1)).all())
    assert float(b_f.detach().max()) > 1.0  # drawn up to log(29): not the default's |b| <= 1/sqrt(n)
    plain = build_model(resolve("copy", "quick", copy_profile(["lstm"]))[0][0], task)
    assert plain.initial_state is None


def test_a_run_trains_with_both_settings(tmp_path):
    """Two steps of a real run (the closed-form count checked against the built model)."""
    from bench.sweep.training import train_one

    torch.set_default_dtype(torch.float32)
    profile = copy_profile(["rnn"], init="identity", learn_h0=True)
    profile.task_params = {"delay": 5, "eval_batches": 1, "eval_batch_size": 8}
    config, task = resolve("copy", "quick", profile)[0]
    result = train_one(config, task, "cpu")
    assert result["status"] == "ok" and result["effective_params"] == config.params
