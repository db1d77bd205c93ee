"""The training protocol: no dead starts, the loss scale, tuning, early stopping, `not
learned`, and clean provenance for the stores that get committed."""

import dataclasses
import json
import subprocess

import pytest
import pytorch_lightning as pl
import torch

from bench.cli import main
from bench.store.results import ResultsStore
from bench.suite.suites import TUNED, TrainConfig, load_profile, load_suite, resolve, suite_names
from bench.suite.tuning import TUNING_STORE, choose, tuning_runs
from bench.sweep import provenance, training
from models.errors import UserInputError
from tasks import TASKS, task_class
from tasks.audio import AudioGeneration
from tasks.copy import CopyTask
from tasks.timit.synth import write_synthetic_corpus

ZERO_INPUT_TASKS = [name for name in TASKS if task_class(name).zero_input]
ARCHS = ["rnn", "lstm", "gru", "cwrnn/exponential", "cwrnn/dense"]


def recurrent_weight(rnn):
    return rnn.weight_hh if hasattr(rnn, "weight_hh") else rnn.weight_hh_l0


def first_step_gradient(task_name, profile_name, arch, **train_overrides):
    suite = load_suite(task_name)
    profile = load_profile(suite, profile_name)
    profile = dataclasses.replace(profile, archs=[arch], budgets=profile.budgets[:1], seeds=1,
                                  task_params={k: v[0] if isinstance(v, list) else v
                                               for k, v in profile.task_params.items()},
                                  train=dataclasses.replace(profile.train, **{"lr": 0.01, **train_overrides}))
    # a tuned profile's searched settings stand in as the profile's own (its search is not run here)
    (config, task), = resolve(task_name, profile_name, profile, {arch: {}})
    pl.seed_everything(0, verbose=False)
    model = training.build_model(config, task)
    batch = next(iter(task.datamodule(1, 0, 1).train_dataloader()))
    model.task.loss(model(batch["x"]), batch, config.train["loss_reduction"]).backward()
    return recurrent_weight(model.rnn).grad


@pytest.mark.parametrize("task_name", ZERO_INPUT_TASKS)
@pytest.mark.parametrize("arch", ARCHS)
def test_zero_input_tasks_have_no_dead_start(task_name, arch):
    """Every profile of every no-input task: the recurrent weights get a gradient at step 1."""
    assert ZERO_INPUT_TASKS == ["audio"]
    for profile_name in load_suite(task_name)["profiles"]:
        grad = first_step_gradient(task_name, profile_name, arch)
        assert grad is not None and grad.abs().sum() > 0, profile_name


def test_zero_biases_are_a_dead_start():
    """Why the profiles draw their biases: with zero biases every state is tanh(0) = 0."""
    for arch in ARCHS:
        grad = first_step_gradient("audio", "paper", arch, bias_init="zeros")
        assert grad is None or grad.abs().sum() == 0, arch


def test_loss_reduction_sums_over_scored_steps():
    torch.manual_seed(0)
    audio = AudioGeneration(target="synth:bell")
    batch = audio.batch()
    y_hat = torch.randn_like(batch["y"])
    assert torch.allclose(audio.loss(y_hat, batch, "sum"), audio.loss(y_hat, batch, "mean") * audio.length)
    copy = CopyTask(delay=5)
    from tasks.copy import make_batch

    batch = make_batch(torch.Generator().manual_seed(0), 4, 5, 5)
    y_hat = torch.randn(4, 25, copy.output_size)
    assert torch.allclose(copy.loss(y_hat, batch, "sum"), copy.loss(y_hat, batch) * 10)


@pytest.mark.parametrize("field,value", [("loss_reduction", "median"), ("bias_init", "uniform"),
                                         ("patience", 3), ("epochs", -1), ("lr", "best")])
def test_bad_train_settings_are_one_line_errors(field, value):
    suite = load_suite("copy")
    profile = load_profile(suite, "quick")
    profile.train = dataclasses.replace(profile.train, **{field: value})
    with pytest.raises(UserInputError, match=field.split("_")[0]):
        resolve("copy", "quick", profile)


def test_epochs_need_a_task_with_a_finite_training_set():
    profile = load_profile(load_suite("copy"), "quick")
    profile.train = dataclasses.replace(profile.train, epochs=3)
    with pytest.raises(UserInputError, match="no epochs"):
        resolve("copy", "quick", profile)


@pytest.mark.parametrize("metrics,learned", [({"recall_accuracy": 0.13}, False), ({"recall_accuracy": 0.5}, True),
                                             ({}, None)])
def test_copy_learned_is_judged_against_the_memoryless_baseline(metrics, learned):
    assert CopyTask(delay=5).learned(metrics) is learned


def test_audio_learned_needs_nmse_below_the_constant_baseline():
    task = AudioGeneration(target="synth:bell")
    assert task.learned({"nmse": 0.995}) is False and task.learned({"nmse": 0.5}) is True


TINY_COPY = ["--archs", "rnn", "cwrnn/exponential", "--budgets", "400", "--param", "delay=3",
             "--param", "variable_delay=false"]


def tiny_copy_profile(grid, seeds=1):
    profile = load_profile(load_suite("copy"), "quick")
    return dataclasses.replace(
        profile, archs=["rnn", "cwrnn/exponential"], budgets=[400], task_params={"delay": 3, "variable_delay": False},
        train=dataclasses.replace(profile.train, lr=TUNED, steps=3, val_every=3),
        tune=dataclasses.replace(load_profile(load_suite("audio"), "paper").tune, grid=grid, seeds=seeds,
                                 budget=0, task_params={}))


def test_tuning_runs_give_every_architecture_the_same_grid_and_score_on_validation():
    runs = tuning_runs("copy", "quick", tiny_copy_profile([0.001, 0.01], seeds=2))
    assert len(runs) == 2 * 2 * 2
    by_arch = {}
    for config, _ in runs:
        by_arch.setdefault(config.arch, set()).add((config.train["lr"], config.seed))
        assert config.tuning is True and config.budget == 400
    assert by_arch["rnn"] == by_arch["cwrnn/exponential"] == {(0.001, 0), (0.001, 1), (0.01, 0), (0.01, 1)}


def fake_record(config, score, status="ok"):
    return {"run_id": config.run_id, "status": status, "metrics": {"recall_accuracy": score},
            "primary_metric": "recall_accuracy", "higher_is_better": True, "baselines": {"recall_accuracy": 0.125}}


def test_choose_takes_the_best_mean_and_a_diverged_run_scores_the_baseline():
    runs = tuning_runs("copy", "quick", tiny_copy_profile([0.001, 0.01, 0.1], seeds=2))
    scores = {0.001: [0.3, 0.5], 0.01: [0.6, 0.2], 0.1: [0.9, None]}  # None: diverged
    records = [fake_record(c, scores[c.train["lr"]][c.seed] or 0.0,
                           "diverged" if scores[c.train["lr"]][c.seed] is None else "ok") for c, _ in runs]
    # means: 0.4, 0.4, (0.9 + 0.125) / 2 = 0.5125
    assert choose(runs, records) == {"rnn": 0.1, "cwrnn/exponential": 0.1}
    scores[0.1] = [0.2, None]  # 0.1625: a tie of 0.001 and 0.01 goes to the smaller rate
    records = [fake_record(c, scores[c.train["lr"]][c.seed] or 0.0,
                           "diverged" if scores[c.train["lr"]][c.seed] is None else "ok") for c, _ in runs]
    assert choose(runs, records) == {"rnn": 0.001, "cwrnn/exponential": 0.001}
    with pytest.raises(UserInputError, match="tuning is not complete.*cwbench tune copy"):
        choose(runs, records[1:])


def test_tune_then_run_uses_the_chosen_rate(tmp_path, monkeypatch, capsys):
    """End to end through the CLI on a tiny grid: tuning stores its runs apart, evaluated on
    validation data, and a run of a `tuned` profile takes the chosen rate."""
    monkeypatch.setattr("bench.suite.suites.load_profile", lambda suite, name: tiny_copy_profile([0.001, 0.01]))
    args = ["--results", str(tmp_path), "--steps", "3"]
    assert main(["run", "copy", *args]) == 2
    assert "tuning is not complete" in capsys.readouterr().err
    assert main(["tune", "copy", *args]) == 0
    out = capsys.readouterr().out
    tuning = ResultsStore(tmp_path / "copy" / TUNING_STORE).load()
    assert len(tuning) == 4 and all(r["evaluated_on"] == "val" and r["tuning"] for r in tuning)
    chosen = dict(line.removeprefix("chosen learning rate: ").split() for line in out.splitlines()
                  if line.startswith("chosen"))
    assert set(chosen) == {"rnn", "cwrnn/exponential"}
    assert main(["run", "copy", *args]) == 0
    runs = ResultsStore(tmp_path / "copy" / "runs.jsonl").load()
    assert {r["arch"]: r["train"]["lr"] for r in runs} == {k: float(v) for k, v in chosen.items()}
    assert all(r["evaluated_on"] == "test" and "tuning" not in r for r in runs)
    board = (tmp_path / "copy" / "leaderboard.md").read_text()
    tuning = board[board.index("### Learning-rate tuning"):]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in tuning.splitlines() if line.startswith("| rnn")]
    assert [(row[1], row[-1]) for row in cells] == [("0.001", "✓" if chosen["rnn"] == "0.001" else ""),
                                                    ("0.01", "✓" if chosen["rnn"] == "0.01" else "")]


def test_early_stopping_on_training_error_records_why_it_stopped(tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    write_synthetic_corpus(root, seed=1, n_speakers=7)
    monkeypatch.setenv("TIMIT_ROOT", str(root))
    args = ["run", "timit", "--results", str(tmp_path / "r"), "--archs", "cwrnn/exponential", "--budgets", "2000",
            "--seeds", "1", "--param", "n_mfcc=4", "--no-leaderboard", "--param", f"cache_dir={tmp_path / 'c'}"]
    assert main([*args, "--train", "epochs=2", "--train", "patience=1", "--train", "batch_size=25",
                 "--train", "lr=0.0"]) == 2  # a bad rate is refused before anything trains
    assert main([*args, "--train", "epochs=4", "--train", "patience=1", "--train", "batch_size=25",
                 "--train", "lr=1e-9", "--train", "optimizer=sgd"]) == 0
    (record,) = [json.loads(line) for line in (tmp_path / "r" / "timit" / "runs.jsonl").read_text().splitlines()]
    assert record["stopped"] == "patience" and record["epochs_trained"] < 4  # nothing improves at lr 1e-9
    assert record["steps_trained"] == record["epochs_trained"] * 5  # 125 sequences in batches of 25
    assert any("train/error" in point for point in record["curve"])
    assert main([*args, "--train", "epochs=2", "--train", "batch_size=25", "--seeds", "2"]) == 0
    records = [json.loads(line) for line in (tmp_path / "r" / "timit" / "runs.jsonl").read_text().splitlines()]
    capped = [r for r in records if r["train"]["epochs"] == 2]
    assert capped and all(r["stopped"] == "cap" and r["epochs_trained"] == 2 for r in capped)


def test_tuning_holds_out_training_speakers_and_never_sees_the_test_set(tmp_path):
    root = tmp_path / "corpus"
    write_synthetic_corpus(root, seed=1, n_speakers=7)
    task = task_class("timit")(timit_root=str(root), n_mfcc=4, cache_dir=str(tmp_path / "c"))
    tuning = task.for_tuning()
    full, held = task.prepare(), tuning.prepare()
    assert (len(full.train), len(full.test)) == (125, 50)
    assert (len(held.train), len(held.test)) == (100, 25)
    # the held-out examples are training examples of rank 4: compare the raw features
    words = full.words
    raw = {split: {f.tobytes() for c, f in zip(words.choices, words.features) if c.split == split}
           for split in ("train", "test")}
    tuning_raw = [f.tobytes() for f in held.words.features]
    assert len(tuning_raw) == 175  # the cache holds all; prepare() drops the test split
    held_out = (held.test.sequences[0].numpy() * held.std + held.mean).astype("float32")
    assert any(abs(held_out - f[: len(held_out)]).max() < 1e-4 for f in
               [f for c, f in zip(words.choices, words.features) if c.split == "train" and c.rank == 4])
    assert raw["test"].isdisjoint(raw["train"])
    assert tuning.params()["holdout"] == 1 and "holdout" not in task.params()
    assert held.val.sequences[0].numpy().tobytes() == held.test.sequences[0].numpy().tobytes()


def test_a_final_run_with_holdout_validates_on_the_held_out_speaker_and_tests_on_the_test_set(tmp_path):
    """The tuned profile's final runs select their weights on validation data (train.select
    best_val): with holdout those are the held-out training examples, never the test set."""
    root = tmp_path / "corpus"
    write_synthetic_corpus(root, seed=1, n_speakers=7)
    make = task_class("timit")
    task = make(timit_root=str(root), n_mfcc=4, cache_dir=str(tmp_path / "c"), holdout=1)
    plain = make(timit_root=str(root), n_mfcc=4, cache_dir=str(tmp_path / "c")).prepare()
    final, tuning = task.prepare(), task.for_tuning().prepare()
    assert (len(final.train), len(final.val), len(final.test)) == (100, 25, 50)
    assert [s.numpy().tobytes() for s in final.val.sequences] == [s.numpy().tobytes() for s in tuning.val.sequences]
    # the test set is the plain task's (normalised with other training statistics: compare unnormalised)
    assert list(final.test.labels) == list(plain.test.labels)
    unnormalised = [(s.numpy() * final.std + final.mean) for s in final.test.sequences]
    assert all(abs(a - (b.numpy() * plain.std + plain.mean)).max() < 1e-4
               for a, b in zip(unnormalised, plain.test.sequences))
    raw = {s.numpy().tobytes() for s in final.test.sequences}
    assert raw.isdisjoint({s.numpy().tobytes() for s in final.val.sequences})
    assert task.params()["holdout"] == 1 == task.for_tuning().params()["holdout"]
    with pytest.raises(UserInputError, match="bad holdout"):
        make(timit_root=str(root), holdout=5)


def init_repo(path):
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q",
                    "--allow-empty", "-m", "start"], check=True)


def test_a_publishing_store_refuses_uncommitted_code(tmp_path, tmp_path_factory, monkeypatch, capsys):
    init_repo(tmp_path)
    monkeypatch.setattr(provenance, "REPO", tmp_path)
    (tmp_path / "models.py").write_text("changed = True\n")
    results = tmp_path / "results"
    tiny = ["--seeds", "1", "--steps", "2", *TINY_COPY, "--no-leaderboard"]
    assert main(["run", "copy", "--results", str(results), *tiny]) == 2
    err = capsys.readouterr().err
    assert "uncommitted changes outside results/ (models.py)" in err and "--allow-dirty" in err
    assert not (results / "copy" / "runs.jsonl").exists()  # refused before anything trained
    # elsewhere, or with --allow-dirty, it runs; the records say the tree was dirty
    assert main(["run", "copy", "--results", str(tmp_path_factory.mktemp("scratch")), *tiny]) == 0
    assert main(["run", "copy", "--results", str(results), *tiny, "--allow-dirty"]) == 0
    records = ResultsStore(results / "copy" / "runs.jsonl").load()
    assert all(r["dirty"] and r["git_commit"].endswith("-dirty") for r in records)
    # changes inside results/ are the runs themselves: a clean tree stays clean
    (tmp_path / "models.py").unlink()
    assert provenance.uncommitted_code() == [] and not provenance.git_commit().endswith("-dirty")
    assert main(["run", "copy", "--results", str(results), *tiny, "--seeds", "2"]) == 0


def test_every_profile_of_every_suite_file_validates():
    for task in suite_names():
        suite = load_suite(task)
        for name in suite["profiles"]:
            profile = load_profile(suite, name)
            assert isinstance(profile.train, TrainConfig)
            if profile.train.lr == TUNED:
                assert profile.tune is not None and profile.tune.grid == sorted(profile.tune.grid)


def test_best_val_is_refused_where_the_validation_data_are_the_test_set(tmp_path):
    profile = load_profile(load_suite("synthwords"), "quick")
    profile.task_params["cache_dir"] = str(tmp_path / "c")
    profile.train = dataclasses.replace(profile.train, select="best_val")
    with pytest.raises(UserInputError, match="would pick .* weights on the test set.*holdout=1"):
        resolve("synthwords", "quick", profile)
    profile.task_params["holdout"] = 1
    assert resolve("synthwords", "quick", profile)
