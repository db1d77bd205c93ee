"""The IndRNN's, the Phased LSTM's and minGRU's "compiled" implementations (models/_numba_indrnn.py,
_numba_plstm.py, _numba_mingru.py) against their first implementations (torch's loop; minGRU's
sequential loop in torch) with the same weights: outputs,
final states and the gradient of every parameter, of the input and of the initial state, on
random shapes, with and without an initial state, in training and in evaluation (the Phased
LSTM's leak); float64 to 1e-9 relative, float32 to 1e-5. Also: the IndRNN's recurrent-weight
constraint acts alike on both, what `auto` runs, what "compiled" refuses, results that do not
depend on the thread count, and that every committed record names an implementation its
architecture still has (what `cwbench verify` reruns it on). The generated conformance tests
(tests/test_architectures.py) run on both implementations too. Tiny shapes, no timing.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from recurrence_checks import assert_clamped_under_inference_mode, indrnn_past_its_bound, on_one_and_two_threads

from models.architectures import ARCHITECTURES
from models.errors import UserInputError
from models.phased_lstm import COMPILED_UP_TO
from models.registry import ModelSpec, build_rnn, freeze_input_weights, implementation

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parent.parent
CELLS = ("indrnn", "phased_lstm")  # committed records made on torch
KERNEL_CELLS = (*CELLS, "mingru")  # those with a compiled implementation


def pair(arch: str, input_size: int, hidden: int, dtype, seed: int = 0):
    """The first implementation (torch's loop) and the compiled one, with the same weights. The
    Phased LSTM's periods are drawn short, so that its gates open, close and leak within a few steps."""
    torch.manual_seed(seed)
    first = ARCHITECTURES[arch].implementations[0]
    reference = build_rnn(ModelSpec(arch, hidden), input_size, first).to(dtype)
    if arch == "phased_lstm":
        with torch.no_grad():
            reference.period.uniform_(2.0, 12.0)
            reference.period[0].neg_()  # enters as |tau|
            reference.shift.uniform_(-3.0, 6.0)
            reference.open_ratio.fill_(0.3)
    compiled = build_rnn(ModelSpec(arch, hidden), input_size, "compiled").to(dtype)
    compiled.load_state_dict(reference.state_dict())
    return reference, compiled


def initial_state(arch: str, batch: int, hidden: int, dtype):
    if arch == "phased_lstm":
        return tuple(torch.randn(1, batch, hidden, dtype=dtype) for _ in range(2))
    state = torch.randn(1, batch, hidden, dtype=dtype)
    return state.abs() if arch == "indrnn" else state  # an IndRNN's states are >= 0


def outputs_and_gradients(module, x, h0) -> dict:
    """Outputs, final state(s) and every gradient under a loss with random weights on the
    outputs and the final state(s)."""
    x = x.clone().requires_grad_()
    states = None if h0 is None else tuple(t.clone().requires_grad_() for t in (h0 if isinstance(h0, tuple) else (h0,)))
    out, last = module(x, None if states is None else states if isinstance(h0, tuple) else states[0])
    last = last if isinstance(last, tuple) else (last,)
    generator = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t.dtype)).sum()
               for t in (out, *last))
    loss.backward()
    found = {"outputs": out, **{f"state {i}": t for i, t in enumerate(last)}, "grad x": x.grad}
    found.update({f"grad h0 {i}": t.grad for i, t in enumerate(states or ())})
    found.update({f"grad {n}": p.grad for n, p in module.named_parameters() if p.requires_grad})
    return found


def assert_agree(expected: dict, got: dict, tolerance: float):
    """Every tensor to `tolerance` relative to its own largest entry (an entry near 0 is held
    to the tensor's scale, not to its own)."""
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        assert want is not None, key
        scale = float(want.detach().abs().max()) or 1.0
        torch.testing.assert_close(got[key], want, rtol=tolerance, atol=tolerance * scale,
                                   msg=lambda m, k=key: f"{k}: {m}")


SHAPES = [random.Random(seed).choice([(b, t, i, n) for b in (1, 2, 5, 9) for t in (1, 3, 17, 40)
                                      for i in (1, 3) for n in (1, 4, 7)]) for seed in range(6)]


@pytest.mark.parametrize("arch", KERNEL_CELLS)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
@pytest.mark.parametrize("shape", SHAPES + [(1, 320, 1, 15), (6, 60, 4, 9)])  # + the audio shape, and B > ROWS
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_compiled_computes_the_torch_implementations_function(arch, dtype, tolerance, shape, with_h0, training):
    batch, steps, inputs, hidden = shape
    reference, compiled = pair(arch, inputs, hidden, dtype)
    reference.train(training)
    compiled.train(training)
    torch.manual_seed(1)
    x = torch.randn(batch, steps, inputs, dtype=dtype)
    h0 = initial_state(arch, batch, hidden, dtype) if with_h0 else None
    assert implementation(compiled, x) == "compiled" and implementation(reference, x) != "compiled"
    assert_agree(outputs_and_gradients(reference, x, h0), outputs_and_gradients(compiled, x, h0), tolerance)


@pytest.mark.parametrize("arch", KERNEL_CELLS)
def test_compiled_agrees_with_frozen_input_weights_and_no_input(arch):
    """The audio task's network: a zero input channel, input weights frozen (no gradient)."""
    reference, compiled = pair(arch, 1, 6, torch.float64)
    for module in (reference, compiled):
        freeze_input_weights(module)
    x = torch.zeros(1, 50, 1, dtype=torch.float64)
    assert_agree(outputs_and_gradients(reference, x, None), outputs_and_gradients(compiled, x, None), 1e-9)


def test_phased_lstm_compiled_keeps_closed_units_exactly_in_evaluation():
    """At evaluation the leak is 0: a unit whose gate is closed holds its state bit for bit."""
    _, compiled = pair("phased_lstm", 2, 3, torch.float64)
    with torch.no_grad():
        compiled.period.fill_(100.0)
        compiled.shift.fill_(-50.0)  # phi = (t + 50) / 100: closed for t < 50 at r_on = 0.3
    h0 = initial_state("phased_lstm", 2, 3, torch.float64)
    compiled.eval()
    out, (h, c) = compiled(torch.randn(2, 40, 2, dtype=torch.float64), h0)
    assert torch.equal(out, h0[0][0][:, None].expand(2, 40, 3)) and torch.equal(c, h0[1])
    compiled.train()
    out, _ = compiled(torch.randn(2, 40, 2, dtype=torch.float64), h0)
    assert not torch.equal(out[:, -1], h0[0][0])  # the leak moves them in training


@pytest.mark.parametrize("backend", ["torch", "compiled"])
def test_indrnn_constraint_acts_alike_on_either_implementation(backend):
    reference, _ = pair("indrnn", 3, 4, torch.float64)
    module = build_rnn(ModelSpec("indrnn", 4), 3, backend).double()
    module.load_state_dict(reference.state_dict())
    x, out, bound = indrnn_past_its_bound(module, torch.float64)
    assert module.weight_hh.detach().tolist() == [bound, -bound, 0.5, 1.0]
    out.sum().backward()  # the clamp happened before the graph: it stays valid
    assert module.weight_hh.grad is not None
    version = module.weight_hh._version
    module(torch.randn(2, 50, 3, dtype=torch.float64))
    assert module.weight_hh._version == version + 1  # 2^(1/50) < 2^(1/10): clamped again, in place
    version = module.weight_hh._version
    module(torch.randn(2, 50, 3, dtype=torch.float64))
    assert module.weight_hh._version == version  # within the bound: never written
    assert_clamped_under_inference_mode(module, x, bound)


def test_auto_runs_the_compiled_kernels_where_they_are_faster():
    x = torch.zeros(1, 320, 1)  # the audio shape
    indrnn, plstm = build_rnn(ModelSpec("indrnn", 333), 1), build_rnn(ModelSpec("phased_lstm", 15), 1)
    mingru = build_rnn(ModelSpec("mingru", 333), 1)
    assert implementation(indrnn, x) == implementation(plstm, x) == implementation(mingru, x) == "compiled"
    assert implementation(mingru, torch.zeros(64, 120, 1)) == "compiled"
    assert implementation(indrnn, torch.zeros(256, 10, 1)) == "compiled"
    assert implementation(plstm, torch.zeros(COMPILED_UP_TO // 15, 10, 1)) == "compiled"
    assert implementation(plstm, torch.zeros(COMPILED_UP_TO // 15 + 1, 10, 1)) == "torch"
    for module in (indrnn, plstm, mingru):
        half, fallback = module.to(torch.bfloat16), ARCHITECTURES[module_arch(module)].implementations[0]
        assert implementation(half, torch.zeros(1, 3, 1, dtype=torch.bfloat16)) == fallback
        assert implementation(half, torch.zeros(1, 3, 1)) == fallback  # the weights are not the input's dtype


def module_arch(module) -> str:
    return {"IndRNN": "indrnn", "PhasedLSTM": "phased_lstm", "MinGRU": "mingru"}[type(module).__name__]


@pytest.mark.parametrize("arch", KERNEL_CELLS)
def test_compiled_refuses_what_it_cannot_run(arch):
    module = build_rnn(ModelSpec(arch, 4), 2, "compiled")
    for x, message in [(torch.zeros(1, 3, 2, dtype=torch.bfloat16), "runs on CPU in float32/float64"),
                       (torch.zeros(1, 0, 2), "B, T >= 1")]:
        with pytest.raises(UserInputError, match=f"'compiled' {arch} implementation cannot run this: .*{message}"):
            module.to(x.dtype)(x)
    names = ", ".join(ARCHITECTURES[arch].implementations)
    with pytest.raises(UserInputError, match=f"unknown {arch} implementation 'modular': choose auto or one of {names}"):
        build_rnn(ModelSpec(arch, 4), 2, "modular")


@pytest.mark.parametrize("arch", KERNEL_CELLS)
def test_compiled_kernel_does_not_depend_on_the_thread_count(arch):
    """Bit-identical recurrence with 1 and 2 threads (IndRNN, minGRU: units split across
    threads, each unit's sums in one order; Phased LSTM: gradient chunks follow blocks of rows and are
    added in a fixed order). Only the kernel's own Function is compared: torch's matmuls
    around it may split their sums by thread count."""
    import models.indrnn
    import models.mingru
    import models.phased_lstm

    batch, steps, n = 45, 30, 70  # more blocks of rows than gradient chunks; more units than a chunk
    torch.manual_seed(0)
    if arch == "indrnn":
        function = models.indrnn.CompiledIndRNN
        inputs = [torch.randn(batch, steps, n), torch.randn(batch, n).abs(), torch.rand(n) * 2 - 1]
    elif arch == "mingru":
        function = models.mingru.CompiledMinGRU
        inputs = [torch.rand(batch, steps, n), torch.randn(batch, steps, n), torch.randn(batch, n)]
    else:
        function = models.phased_lstm.CompiledPhasedLSTM
        inputs = [torch.randn(batch, steps, 4 * n), torch.randn(batch, n), torch.randn(batch, n),
                  torch.rand(steps, n), torch.randn(4 * n, n) / 8]

    def run():
        leaves = [t.clone().requires_grad_() for t in inputs]
        outputs = function.apply(*leaves)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        generator = torch.Generator().manual_seed(1)
        sum((t * torch.randn(t.shape, generator=generator)).sum() for t in outputs).backward()
        return [*outputs, *(t.grad for t in leaves)]

    results = on_one_and_two_threads(run)
    for index, (a, b) in enumerate(zip(*results)):
        assert torch.equal(a, b), index


def test_committed_records_name_an_implementation_their_architecture_has():
    """`cwbench verify` reruns a record on the implementation it names (bench/report/verify.py),
    not on what `auto` picks today: the IndRNN and Phased LSTM records made before their compiled
    kernels say "torch", and "torch" still builds and runs the torch loop."""
    seen = set()
    for path in sorted(ROOT.glob("results/*/runs.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            arch = record["arch"].partition("/")[0]
            if record.get("backend") and arch in ARCHITECTURES:
                assert record["backend"] in ARCHITECTURES[arch].implementations, (path, record["run_id"])
                seen.add((arch, record["backend"]))
    for arch in CELLS:
        if (arch, "torch") in seen:
            module = build_rnn(ModelSpec(arch, 4), 2, "torch")
            assert implementation(module, torch.zeros(1, 3, 2)) == "torch"


@pytest.mark.parametrize("arch", CELLS)
def test_a_committed_torch_record_rebuilds_on_torch_through_the_training_code(arch):
    """What a verify rerun does with a committed record: build its network with the recorded
    implementation (SweepOptions.implementations -> Job.backend -> train_one's build_model) and
    record what ran. Without the recorded name, auto would run the compiled kernel."""
    from bench.store.records import RunConfig
    from bench.suite.suites import make_task, task_parameters
    from bench.sweep.training import build_model, recurrence_backend

    records = [json.loads(line) for path in sorted(ROOT.glob("results/*/runs.jsonl"))
               for line in path.read_text().splitlines()]
    record = next((r for r in records if r["arch"] == arch and r.get("backend") == "torch"), None)
    if record is None:
        pytest.skip(f"no committed {arch} record made on torch")
    config = RunConfig.from_dict({k: record[k] for k in ("task", "profile", "task_params", "arch", "budget", "model",
                                                         "params", "train", "seed")})
    known = task_parameters(record["task"])  # a record's task_params also hold values derived from them
    task = make_task(record["task"], {k: v for k, v in record["task_params"].items() if k in known})
    batch = record["train"]["batch_size"]
    assert recurrence_backend(build_model(config, task, record["backend"]).rnn, task, "cpu", batch) == "torch"
    assert recurrence_backend(build_model(config, task, "auto").rnn, task, "cpu", batch) == "compiled"
