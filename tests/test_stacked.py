"""Stacked training (`--stack`, bench/sweep/stacked.py, models/stacked.py): each member of a
stacked group gets what its run alone gets (float64: to rounding), through the sweep (claims,
records, resume), verify and divergence."""

import json

import numpy as np
import pytest
import torch

from bench.cli import main, parser, profile_from_args
from bench.store.claims import Claims
from bench.suite.suites import resolve
from bench.sweep import stacked
from bench.sweep.stacked import group_key, train_stacked, why_not_stacked
from bench.sweep.training import train_one

AUDIO_ARCHS = ["rnn", "lstm", "gru", "cwrnn/exponential", "cwrnn/fibonacci", "cwrnn/dense", "indrnn", "mingru", "lru",
               "phased_lstm"]


def audio_runs(arch, *extra, profile="quick", seeds=2, steps=40):
    args = parser().parse_args(["run", "audio", "--profile", profile, "--archs", arch, "--budgets", "100", "--seeds",
                                str(seeds), "--steps", str(steps), "--train", "val_every=10", *extra])
    _, suite_profile = profile_from_args(args)
    return resolve("audio", args.profile, suite_profile)


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)  # agreement to 1e-9 needs double precision
    yield
    torch.set_default_dtype(torch.float32)


def assert_same_run(alone: dict, member: dict, rel: float, artifacts: float = 0.0) -> None:
    """The same status, curve steps, selected step and keys; numbers within `rel` (relative
    to max(1, |value|)); artifacts (rounded to 5 decimals) within `artifacts` + one last digit."""
    assert member["status"] == alone["status"], (member["reason"], alone["reason"])
    assert member.get("selected_step") == alone.get("selected_step")
    assert member["steps_trained"] == alone["steps_trained"]
    assert [p["step"] for p in member["curve"]] == [p["step"] for p in alone["curve"]]
    pairs = [(p, q) for p, q in zip(alone["curve"], member["curve"])] + [(alone["metrics"], member["metrics"])]
    for ours, theirs in pairs:
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert abs(ours[key] - theirs[key]) <= rel * max(1.0, abs(ours[key])), (key, ours[key], theirs[key])
    assert alone["artifacts"].keys() == member["artifacts"].keys()
    for key in alone["artifacts"]:
        gap = np.max(np.abs(np.array(alone["artifacts"][key]) - np.array(member["artifacts"][key])))
        assert gap <= artifacts + 1.01e-5, key


@pytest.mark.parametrize("arch", AUDIO_ARCHS)
def test_each_member_gets_its_run_alone_float64(arch, float64):
    """Adam with clipping and best-validation selection (the quick profile with select=best_val):
    2 seeds x 2 targets in one group, each against train_one of its own config."""
    runs = audio_runs(arch, "--train", "select=best_val")
    assert len({group_key(config) for config, _ in runs}) == 1 and not why_not_stacked(runs[0][0])
    members = train_stacked([c for c, _ in runs], [t for _, t in runs])
    for (config, task), member in zip(runs, members):
        alone = train_one(config, task, "cpu")
        assert_same_run(alone, member, 1e-9)
        assert member["backend"] == "stacked" and member["effective_params"] == alone["effective_params"]


@pytest.mark.parametrize("arch", ["lstm", "cwrnn/exponential", "indrnn", "mingru", "lru", "phased_lstm"])
def test_sgd_nesterov_without_clipping_and_a_learned_initial_state(arch, float64):
    """The paper profile's optimizer (SGD, Nesterov 0.95, no clip), and train.learn_h0."""
    runs = audio_runs(arch, "--train", "optimizer=sgd", "--train", "lr=0.01", "--train", "momentum=0.95",
                      "--train", "clip=0", "--train", "learn_h0=true", steps=30)
    members = train_stacked([c for c, _ in runs], [t for _, t in runs])
    for (config, task), member in zip(runs, members):
        assert_same_run(train_one(config, task, "cpu"), member, 1e-9)


def test_every_built_in_architecture_stacks():
    from models.architectures import ARCHITECTURES
    from models.stacked import STACKED_ARCHS

    assert sorted(STACKED_ARCHS) == sorted(ARCHITECTURES)


def test_architectures_without_a_stacked_forward_keep_the_per_run_path(monkeypatch):
    monkeypatch.setattr(stacked, "STACKED_ARCHS", ("rnn",))
    config, _ = audio_runs("lstm")[0]
    assert config.profile == "quick" and "no stacked implementation" in why_not_stacked(config)


def test_the_indrnn_constraint_clamps_each_stacked_member_as_its_module_does(float64):
    """A member whose u is past the bound 2^(1/T) is clamped in place before the forward, as
    IndRNN.forward clamps its own parameter; a member within it is left as it is."""
    from bench.sweep.training import build_model
    from models.stacked import StackedModels

    runs = audio_runs("indrnn")[:2]
    models = [build_model(config, task) for config, task in runs]
    with torch.no_grad():
        models[1].rnn.weight_hh[:3] = torch.tensor([1.5, -3.0, 0.999])
    stack = StackedModels(models)
    x = torch.randn(2, 1, 50, models[0].rnn.weight_ih.shape[1])
    together = stack(x)
    bound = 2 ** (1 / 50)
    for k, model in enumerate(models):
        alone = model(x[k])
        torch.testing.assert_close(together[k], alone, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stack.params["rnn.weight_hh"][k], model.rnn.weight_hh, rtol=0, atol=0)
    assert stack.params["rnn.weight_hh"][1, :3].tolist() == [bound, -bound, 0.999]


@pytest.mark.parametrize("arch, implementation", [("indrnn", "torch"), ("indrnn", "compiled"),
                                                  ("mingru", "sequential"), ("mingru", "scan"),
                                                  ("mingru", "compiled"), ("lru", "sequential"), ("lru", "scan"),
                                                  ("phased_lstm", "torch"), ("phased_lstm", "compiled")])
def test_the_torch_only_stacked_forwards_are_each_module_alone(arch, implementation, float64):
    """On input (the audio task's is zeros: its input weights are frozen at 0, so its runs never
    reach B u or W x) and a learned initial state: outputs and every parameter's gradient of
    each member against its module alone, in each of the module's implementations; and the
    outputs in evaluation (the Phased LSTM's gate leaks only in training)."""
    from bench.sweep.training import build_model
    from models.stacked import StackedModels

    torch.manual_seed(0)
    runs = audio_runs(arch, "--train", "learn_h0=true")[:3]
    models = [build_model(config, task) for config, task in runs]
    for model in models:
        model.rnn.backend = implementation
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith(("rnn.weight_ih", "initial_state")):
                    p.normal_(0.0, 0.5)
    # where numba is: indrnn, phased_lstm, mingru on the run alone's kernels; and the torch loops
    stacks = [StackedModels(models), StackedModels(models, "torch")]
    x = torch.randn(3, 2, 37, runs[0][1].input_size)
    weights = torch.randn(3, 2, 37, 1)
    for stack in stacks:
        (stack(x) * weights).sum().backward()
    for k, model in enumerate(models):
        alone = model(x[k])
        (alone * weights[k]).sum().backward()
        for stack in stacks:
            torch.testing.assert_close(stack(x)[k], alone, rtol=1e-10, atol=1e-12)
            for name, p in model.named_parameters():
                if p.requires_grad:
                    torch.testing.assert_close(stack.params[name].grad[k], p.grad, rtol=1e-9, atol=1e-12, msg=name)
    stack = stacks[0]
    stack.training = False
    with torch.no_grad():
        together = stack(x)
        for k, model in enumerate(models):
            torch.testing.assert_close(together[k], model.eval()(x[k]), rtol=1e-10, atol=1e-12)


def test_runs_that_cannot_stack_are_said_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(stacked, "STACKED_ARCHS", ("rnn",))
    assert main(["run", "audio", "--archs", "rnn", "phased_lstm", "--budgets", "100", "--seeds", "2", "--steps", "5",
                 "--param", "target=synth:pluck", "--stack", "--results", str(tmp_path), "--no-leaderboard",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert ("--stack: 2 runs in 1 stacked groups; 2 train one at a time (2: phased_lstm has no stacked "
            "implementation") in out
    records = [json.loads(line) for line in (tmp_path / "audio" / "runs.jsonl").read_text().splitlines()]
    assert sorted((r["arch"], "stacked" in r) for r in records) == [("phased_lstm", False), ("phased_lstm", False),
                                                                     ("rnn", True), ("rnn", True)]


def test_a_diverging_member_is_recorded_diverged_and_the_others_finish(float64):
    runs = audio_runs("gru", "--train", "select=best_val", steps=30)
    configs, tasks = [c for c, _ in runs], [t for _, t in runs]
    clean = train_stacked(configs, tasks)
    hit = train_stacked(configs, tasks, diverge_at={1: 14})
    assert hit[1]["status"] == "diverged" and hit[1]["reason"] == "training loss became nan at step 14"
    assert hit[1]["steps_trained"] == 14 and hit[1]["metrics"] == {} and hit[1]["artifacts"] == {}
    assert [p["step"] for p in hit[1]["curve"]] == [10] and hit[1]["curve"] == clean[1]["curve"][:1]
    assert hit[1]["selected_step"] == 10
    for k in (0, 2, 3):
        assert_same_run(clean[k], hit[k], 1e-12)


SWEEP = ["--profile", "quick", "--archs", "lstm", "cwrnn/exponential", "--budgets", "100", "--seeds", "2",
         "--steps", "30", "--no-leaderboard", "--workers", "1"]


def stored(results):
    path = results / "audio" / "runs.jsonl"
    return {r["run_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_a_stacked_sweep_matches_the_unstacked_one(tmp_path, monkeypatch):
    """Same run ids, same schema plus `stacked`, numbers to float32 rounding; each group's
    members are all claimed before it trains."""
    seen_claims = []
    original = stacked.train_stacked

    def watching(configs, tasks, *args, **kwargs):
        claims = Claims(tmp_path / "stacked" / "audio" / "runs.jsonl.claims")
        seen_claims.append((sorted(c.run_id for c in configs), sorted(claims.mine())))
        return original(configs, tasks, *args, **kwargs)

    monkeypatch.setattr(stacked, "train_stacked", watching)
    assert main(["run", "audio", *SWEEP, "--results", str(tmp_path / "alone")]) == 0
    assert main(["run", "audio", *SWEEP, "--stack", "--results", str(tmp_path / "stacked")]) == 0
    alone, together = stored(tmp_path / "alone"), stored(tmp_path / "stacked")
    assert alone.keys() == together.keys() and len(together) == 8
    assert len(seen_claims) == 2 and all(set(group) <= set(claimed) for group, claimed in seen_claims)
    groups = {r["stacked"]["group"]: r["stacked"]["members"] for r in together.values()}
    assert sorted(len(m) for m in groups.values()) == [4, 4]
    for rid, record in together.items():
        assert set(record) - set(alone[rid]) == {"stacked"} and record["backend"] == "stacked"
        assert record["stacked"]["members"][record["stacked"]["index"]] == rid
        assert_same_run(alone[rid], record, 2e-4, artifacts=1e-3)


def test_a_rerun_trains_only_the_members_not_stored(tmp_path, capsys):
    """A group whose members are partly stored (a sweep stopped between records, or records
    removed) trains again with the others only; their numbers agree with the full group's."""
    results = tmp_path / "results"
    assert main(["run", "audio", *SWEEP, "--stack", "--results", str(results)]) == 0
    full = stored(results)
    path = results / "audio" / "runs.jsonl"
    lines = path.read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["arch"] == "cwrnn/exponential" or json.loads(line)["seed"] == 0]
    path.write_text("".join(line + "\n" for line in kept))
    capsys.readouterr()
    assert main(["run", "audio", *SWEEP, "--stack", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "8 runs in the suite, 6 already in the store, 2 to run" in out and "2 runs in 1 stacked groups" in out
    again = stored(results)
    assert again.keys() == full.keys()
    redone = [rid for rid in again if again[rid]["arch"] == "lstm" and again[rid]["seed"] == 1]
    for rid in redone:
        assert len(again[rid]["stacked"]["members"]) == 2
        assert_same_run(full[rid], again[rid], 2e-4, artifacts=1e-3)


def test_verify_retrains_a_stacked_records_group_bitwise(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "audio", *SWEEP, "--stack", "--results", str(results)]) == 0
    capsys.readouterr()
    assert main(["verify", "audio", "--results", str(results), "--scratch", str(tmp_path / "scratch"),
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "--stack: 8 runs in 2 stacked groups" in out
    assert "4 rows: 4 bitwise." in out


def test_stack_refuses_what_it_cannot_do(tmp_path, capsys):
    assert main(["run", "audio", *SWEEP, "--stack", "--backend", "lstm=torch", "--results", str(tmp_path)]) == 2
    assert "--stack runs its own stacked implementation" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["cwrnn", "lstm", "gru"])
def test_the_compiled_stacked_recurrences_are_the_torch_loops(kind, float64):
    """models/_numba_stacked.py against models/stacked.py's torch loops: outputs and every
    gradient (float64, to rounding), on a random firing schedule for the CW-RNN."""
    from models import stacked as forwards

    torch.manual_seed(0)
    members, batch, steps, n = 3, 2, 17, 5
    gates = {"cwrnn": 1, "lstm": 4, "gru": 3}[kind]
    fires = torch.rand(steps, n) > 0.4
    inputs = [torch.randn(members, batch, steps, gates * n), 0.5 * torch.randn(members, batch, n),
              0.4 * torch.randn(members, gates * n, n)]
    if kind == "lstm":
        inputs.insert(2, 0.5 * torch.randn(members, batch, n))
    if kind == "gru":
        inputs.append(torch.randn(members, 3 * n))
    loops = {"cwrnn": lambda xw, h, w: forwards.cwrnn(xw, h, w.transpose(1, 2), fires),
             "lstm": lambda xw, h, c, w: forwards.lstm(xw, h, c, w.transpose(1, 2)),
             "gru": lambda xw, h, w, b: forwards.gru(xw, h, w.transpose(1, 2), b.unsqueeze(1))}[kind]
    compiled = {"cwrnn": lambda xw, h, w: forwards.CompiledElman.apply(xw, h, w, fires),
                "lstm": forwards.CompiledLSTM.apply, "gru": forwards.CompiledGRU.apply}[kind]
    ours = [t.clone().requires_grad_() for t in inputs]
    theirs = [t.clone().requires_grad_() for t in inputs]
    out_loops, out_compiled = loops(*ours), compiled(*theirs)
    weights = torch.randn_like(out_loops)
    (out_loops * weights).sum().backward()
    (out_compiled * weights).sum().backward()
    torch.testing.assert_close(out_compiled, out_loops, rtol=1e-12, atol=1e-12)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-12)


def test_float32_stacked_runs_are_close_to_their_runs_alone():
    """float32 (what sweeps run): the compiled stacked loops use the single-run kernels' tanh;
    a short run agrees with train_one to float32 noise."""
    runs = audio_runs("lstm", steps=10)
    members = train_stacked([c for c, _ in runs], [t for _, t in runs])
    for (config, task), member in zip(runs, members):
        assert_same_run(train_one(config, task, "cpu"), member, 1e-4, artifacts=1e-4)


def test_a_sweep_stopped_mid_group_loses_only_that_group(tmp_path, monkeypatch, capsys):
    """Stopped while its second group trains: the first group's records are stored, the second's
    members are not (nor left claimed), and the rerun trains exactly them."""
    original, calls = stacked.train_stacked, []

    def stopped_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(stacked, "train_stacked", stopped_on_second)
    results = tmp_path / "results"
    assert main(["run", "audio", *SWEEP, "--stack", "--results", str(results)]) == 130
    first = stored(results)
    assert len(first) == 4 and len({r["arch"] for r in first.values()}) == 1
    assert not list((results / "audio" / "runs.jsonl.claims").glob("*"))
    monkeypatch.setattr(stacked, "train_stacked", original)
    capsys.readouterr()
    assert main(["run", "audio", *SWEEP, "--stack", "--results", str(results)]) == 0
    assert "4 already in the store, 4 to run" in capsys.readouterr().out
    lines = (results / "audio" / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 8 and len({json.loads(line)["run_id"] for line in lines}) == 8


def test_a_group_that_crashes_records_each_member_failed(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no stack today")

    monkeypatch.setattr(stacked, "train_stacked", broken)
    assert main(["run", "audio", *SWEEP, "--archs", "gru", "--stack", "--results", str(tmp_path)]) == 1
    records = list(stored(tmp_path).values())
    assert len(records) == 4
    assert {(r["status"], r["reason"]) for r in records} == {("failed", "RuntimeError: no stack today")}
    assert all(r["stacked"]["members"][r["stacked"]["index"]] == r["run_id"] for r in records)


def test_other_tasks_keep_the_per_run_path(tmp_path, capsys):
    assert main(["run", "copy", "--archs", "rnn", "--budgets", "400", "--seeds", "2", "--steps", "2", "--param",
                 "delay=3", "--param", "variable_delay=false", "--stack", "--results", str(tmp_path),
                 "--no-leaderboard", "--workers", "1"]) == 0
    assert "--stack: 0 runs in 0 stacked groups; 2 train one at a time (2: task copy does not stack (stacked: " \
           "audio))" in capsys.readouterr().out
