"""End to end: sweeps into a temporary results dir, resume, divergence, failures, CLI errors."""

import dataclasses
import json
import re
import subprocess
import sys
import warnings

import pytest
from wandb_offline import read_run

from bench.cli import main
from bench.store.records import RunConfig
from bench.store.results import ResultsStore
from bench.suite.suites import TrainConfig
from bench.sweep import runner, training
from tasks.copy import CopyTask

TINY = ["--archs", "rnn", "cwrnn/exponential", "--seeds", "2", "--steps", "4", "--budgets", "400",
        "--param", "delay=3", "--param", "variable_delay=false"]


def store_lines(results):
    return (results / "copy" / "runs.jsonl").read_text().splitlines()


def test_quick_sweep_writes_store_and_leaderboard(tmp_path, capsys):
    assert main(["run", "copy", "--results", str(tmp_path), *TINY]) == 0
    records = [json.loads(line) for line in store_lines(tmp_path)]
    assert len(records) == 4 and {r["status"] for r in records} == {"ok"}
    r = records[0]
    for key in ("run_id", "task_params", "model", "budget", "params", "effective_params", "seed", "metrics",
                "status", "wall_time_s", "device", "git_commit", "versions", "date", "curve", "command"):
        assert key in r
    assert r["params"] == r["effective_params"] and 0 <= r["metrics"]["recall_accuracy"] <= 1
    assert {x["backend"] for x in records} == {"torch", "compiled"}  # what auto picks on a CPU with numba
    out = capsys.readouterr().out
    assert "[1/4]" in out and "[4/4]" in out
    for name in ("leaderboard.md", "leaderboard.csv", "recall_accuracy_vs_delay_quick.png",
                 "learning_curves_quick.png"):
        assert (tmp_path / "copy" / name).stat().st_size > 0
    board = (tmp_path / "copy" / "leaderboard.md").read_text()
    assert "cwrnn/exponential" in board and "cwbench run copy" in board

    written = {p.name: p.read_bytes() for p in (tmp_path / "copy").glob("leaderboard.*")}
    assert main(["leaderboard", "copy", "--results", str(tmp_path)]) == 0
    assert written == {p.name: p.read_bytes() for p in (tmp_path / "copy").glob("leaderboard.*")}  # a rebuild

    before = store_lines(tmp_path)
    assert main(["run", "copy", "--results", str(tmp_path), *TINY]) == 0
    assert "0 to run" in capsys.readouterr().out
    assert store_lines(tmp_path) == before


def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path, monkeypatch, capsys):
    real = training.train_one
    calls = []

    def killed_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_one", killed_on_third)
    assert main(["run", "copy", "--results", str(tmp_path), *TINY]) == 130
    first = store_lines(tmp_path)
    assert len(first) == 2
    monkeypatch.setattr(training, "train_one", real)
    assert main(["run", "copy", "--results", str(tmp_path), *TINY]) == 0
    assert "2 already in the store, 2 to run" in capsys.readouterr().out
    lines = store_lines(tmp_path)
    assert lines[:2] == first and len(lines) == 4
    assert len({json.loads(line)["run_id"] for line in lines}) == 4


class NaNCopy(CopyTask):
    def loss(self, y_hat, batch, reduction="mean"):
        return super().loss(y_hat, batch, reduction) * float("nan")


class BrokenCopy(CopyTask):
    def datamodule(self, *args):
        raise RuntimeError("no data today")


def _config(seed, steps=3) -> RunConfig:
    return RunConfig.from_dict({"task": "copy", "profile": "test", "task_params": {"delay": 2}, "arch": "rnn",
            "model": {"arch": "rnn", "hidden_size": 4, "schedule": "", "periods": [], "module_sizes": [],
                      "offset": 0, "order": []},
            "budget": 109, "params": 109, "seed": seed,
            "train": dataclasses.asdict(TrainConfig(steps=steps, batch_size=4, optimizer="sgd", lr=0.1,
                                                    val_every=steps))})


def test_divergence_and_failure_are_recorded_and_the_sweep_goes_on(tmp_path):
    task = CopyTask(delay=2, eval_batches=1, eval_batch_size=8)
    runs = [(_config(0), NaNCopy(delay=2)), (_config(1), BrokenCopy(delay=2)), (_config(2), task)]
    counts = runner.run_suite(runs, tmp_path, log=lambda *a, **k: None)
    assert counts == {"ok": 1, "diverged": 1, "failed": 1, "skipped": 0}
    records = ResultsStore(tmp_path / "copy" / "runs.jsonl").load()
    status = {r["seed"]: (r["status"], r["reason"]) for r in records}
    assert status[0][0] == "diverged" and "nan" in status[0][1]
    assert status[1] == ("failed", "RuntimeError: no data today")
    assert status[2][0] == "ok"


def test_same_seed_same_numbers():
    task = CopyTask(delay=3, eval_batches=1, eval_batch_size=16)
    from models.registry import ModelSpec, closed_form_count

    config = dataclasses.replace(
        _config(7, steps=5), arch="cwrnn/exponential",
        model={"arch": "cwrnn", "hidden_size": 6, "schedule": "exponential", "periods": [1, 2, 4],
               "module_sizes": [2, 2, 2], "offset": 0, "order": []},
        params=closed_form_count(ModelSpec("cwrnn", 6, "exponential", (1, 2, 4), (2, 2, 2)), 10, 9))
    a = training.train_one(config, task, "cpu")
    b = training.train_one(config, task, "cpu")
    assert a["status"] == "ok" and a["metrics"] == b["metrics"] and a["curve"] == b["curve"]
    reference = training.train_one(config, task, "cpu", backend="reference")
    assert reference["backend"] == "reference"
    for key, value in a["metrics"].items():  # another implementation: equal up to float32 rounding
        assert reference["metrics"][key] == pytest.approx(value, rel=1e-3, abs=1e-4)


def test_a_small_rnn_trains_on_the_compiled_kernel_and_says_so():
    task = CopyTask(delay=2, eval_batches=1, eval_batch_size=8)
    result = training.train_one(_config(0), task, "cpu")  # hidden 4, batch 4: auto runs the compiled kernel
    assert result["status"] == "ok" and result["backend"] == "compiled"
    forced = training.train_one(_config(0), task, "cpu", backend="torch")
    assert forced["backend"] == "torch"
    for key, value in result["metrics"].items():  # another implementation: equal up to float32 rounding
        assert forced["metrics"][key] == pytest.approx(value, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["run", "copy", "--archs", "transformer"], "unknown architecture 'transformer'"),
    (["run", "copy", "--archs", "cwrnn/1,0,4"], "bad clock period 0"),
    (["run", "copy", "--archs", "cwrnn/sawtooth"], "unknown schedule 'sawtooth'"),
    (["run", "copy", "--budgets", "30"], "budget 30 is impossible"),
    (["run", "chess"], "unknown task 'chess'"),
    (["run", "copy", "--profile", "huge"], "unknown profile 'huge'"),
    (["run", "copy", "--param", "delay=0"], "bad delay 0"),
    (["run", "copy", "--param", "colour=red"], "unknown parameter 'colour' for task copy: its parameters are delay"),
    (["leaderboard", "copy"], "no valid runs stored for task copy"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, args, message):
    assert main([*args, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "copy" / "runs.jsonl").exists()


def test_corrupt_store_stops_the_sweep_and_keeps_the_file(tmp_path, capsys):
    path = tmp_path / "copy" / "runs.jsonl"
    path.parent.mkdir()
    path.write_text('{"run_id": "x", "status": "ok"}\nnot json\n')
    assert main(["run", "copy", "--results", str(tmp_path), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "corrupt at line 2" in err and "\n" not in err
    assert path.read_text() == '{"run_id": "x", "status": "ok"}\nnot json\n'


def test_module_entry_point_exits_nonzero():
    done = subprocess.run([sys.executable, "-m", "bench", "run", "copy", "--archs", "nope"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: unknown architecture 'nope'")


def test_wandb_offline_runs_are_complete_fresh_quiet_and_leave_the_progress_line_whole(tmp_path, monkeypatch,
                                                                                         capsys):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_SILENT", raising=False)  # the runner must keep wandb quiet itself
    said = []  # wandb's own warnings (deprecations among them) go through termwarn, not `warnings`
    monkeypatch.setattr(wandb, "termwarn", lambda *args, **kwargs: said.append(args))
    args = ["--wandb", "--archs", "rnn", "cwrnn/exponential", "--seeds", "1", "--steps", "4", "--budgets", "400",
            "--param", "delay=3", "--param", "variable_delay=false"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["run", "copy", "--results", str(tmp_path / "a"), *args]) == 0
        assert main(["run", "copy", "--results", str(tmp_path / "b"), *args]) == 0  # a rerun of the same config
    from_wandb = [w for w in caught if "wandb" in w.filename or "wandb" in str(w.message).lower()]
    assert not from_wandb and not said, (from_wandb, said)
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(progress) == 4 and all(re.fullmatch(r"\[[12]/2\] copy \S+ budget=400 seed=0 ok "
                                                   r"recall_accuracy=\S+( \(not learned\))? \[\S+s\]"
                                                   r"( \| ETA \w+)?", line)
                                      for line in progress), progress

    records = [r for twin in "ab" for r in ResultsStore(tmp_path / twin / "copy" / "runs.jsonl").load()]
    mirrored = [read_run(run) for run in (tmp_path / "wandb").glob("offline-run-*")]
    assert len(mirrored) == 4 and len({logged["id"] for logged in mirrored}) == 4
    for arch in ("rnn", "cwrnn/exponential"):  # the twins: the same run id, two W&B runs
        twins = [logged for logged in mirrored if logged["config"]["arch"] == arch]
        assert len(twins) == 2 and len({logged["config"]["run_id"] for logged in twins}) == 1
    for logged in mirrored:
        record = next(r for r in records if (r["command"], r["arch"]) == (logged["config"]["command"],
                                                                          logged["config"]["arch"]))
        assert logged["id"].startswith(record["run_id"] + "-")
        assert logged["deprecated"] == []  # no deprecated wandb feature used (telemetry)
        assert f"run_id={record['run_id']}" in logged["tags"] and logged["config"]["run_id"] == record["run_id"]
        config = logged["config"]
        for key in ("backend", "git_commit", "versions", "device", "task_params", "model", "train", "arch", "seed",
                    "primary_metric", "baselines", "command"):
            assert config[key] == record[key], key
        assert config["backend"] == {"rnn": "torch", "cwrnn/exponential": "compiled"}[record["arch"]]
        summary = logged["summary"]
        assert summary["final/recall_accuracy"] == pytest.approx(record["metrics"]["recall_accuracy"])
        assert summary["status"] == "ok" and summary["effective_params"] == record["params"]
        for key in ("learned", "stopped", "steps_trained", "backend"):
            assert summary[key] == record[key], key
    losses = [h["train/loss"] for h in logged["history"] if "train/loss" in h]
    assert len(losses) >= 2 and all(isinstance(v, float) for v in losses)
