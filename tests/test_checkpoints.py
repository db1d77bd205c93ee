"""A run killed mid-training goes on from its checkpoint in the next invocation, to the numbers
of a run that was never stopped (bench/sweep/checkpoints.py)."""

import json

import pytest
import torch

from bench.cli import main
from bench.sweep import checkpoints
from models.lightning import SequenceModel

# 60 steps validated every 10: a checkpoint at every validation (EVERY_S patched to 0) but the last
RUNS = {
    "copy": ["copy", "--archs", "lstm", "--seeds", "1", "--steps", "60", "--budgets", "400",
             "--param", "delay=3", "--param", "variable_delay=false",
             "--train", "val_every=10", "--train", "select=best_val", "--train", "learn_h0=true"],
    "audio": ["audio", "--archs", "cwrnn/exponential", "--seeds", "1", "--steps", "60", "--budgets", "100",
              "--param", "target=synth:chord", "--train", "val_every=10", "--train", "select=best_val"],
}
COMMON = ["--workers", "1", "--no-leaderboard"]
SAME = ("metrics", "curve", "selected_step", "steps_trained", "status", "learned", "artifacts", "effective_params")


class Killed(RuntimeError):
    """What the patched training step raises: the run crashes there, as a killed one stops."""


def kill_at(monkeypatch, step: int) -> None:
    real = SequenceModel.training_step

    def training_step(self, batch, batch_idx):
        if self.step_offset + self.global_step == step:
            raise Killed(f"killed at step {step}")
        return real(self, batch, batch_idx)

    monkeypatch.setattr(SequenceModel, "training_step", training_step)


def records(results, task):
    return [json.loads(line) for line in (results / task / "runs.jsonl").read_text().splitlines()]


def checkpoint_files(results, task):
    return sorted((results / task / "runs.jsonl.checkpoints").glob("*.ckpt"))


@pytest.fixture
def every_validation(monkeypatch):
    monkeypatch.setattr(checkpoints, "EVERY_S", 0.0)


@pytest.mark.parametrize("task", sorted(RUNS))
def test_a_run_killed_mid_training_goes_on_from_its_checkpoint_to_the_numbers_of_a_run_never_stopped(
        tmp_path, monkeypatch, every_validation, task):
    straight = tmp_path / "straight"
    assert main(["run", *RUNS[task], *COMMON, "--results", str(straight)]) == 0
    (expected,) = records(straight, task)
    assert "resumed_at" not in expected and not checkpoint_files(straight, task)  # removed once stored

    killed = tmp_path / "killed"
    with monkeypatch.context() as patch:
        kill_at(patch, 35)
        assert main(["run", *RUNS[task], *COMMON, "--results", str(killed)]) == 1  # the run failed
    (failed,) = records(killed, task)
    assert failed["status"] == "failed" and "killed at step 35" in failed["reason"]
    (kept,) = checkpoint_files(killed, task)
    assert checkpoints.read(kept, expected["run_id"]).step == 30  # the last validation before the kill

    with monkeypatch.context() as patch:  # killed again, later: it goes on from 30, then from 50
        kill_at(patch, 55)
        assert main(["run", *RUNS[task], *COMMON, "--results", str(killed)]) == 1
    progress = checkpoints.read(kept, expected["run_id"])
    assert progress.resumed_at == [30] and progress.step == 50 and progress.wall_s > 0

    assert main(["run", *RUNS[task], *COMMON, "--results", str(killed)]) == 0
    resumed = records(killed, task)[-1]
    assert resumed["status"] == "ok" and resumed["resumed_at"] == [30, 50]
    assert {k: resumed[k] for k in SAME} == {k: expected[k] for k in SAME}
    assert [p["step"] for p in resumed["curve"]] == list(range(10, 61, 10))
    assert "wall_time_before_s" not in resumed  # in wall_time_s: the training up to each checkpoint counts
    assert resumed["wall_time_s"] > progress.wall_s
    assert not checkpoint_files(killed, task)


def test_an_unreadable_or_foreign_checkpoint_is_dropped_with_a_warning_and_the_run_starts_over(
        tmp_path, monkeypatch, every_validation, caplog):
    args = [*RUNS["copy"], *COMMON, "--results", str(tmp_path)]
    with monkeypatch.context() as patch:
        kill_at(patch, 35)
        main(["run", *args])
    (kept,) = checkpoint_files(tmp_path, "copy")
    run_id = kept.stem
    progress = checkpoints.read(kept, run_id)

    progress.run_id = "another-run"
    kept.write_bytes(progress.to_bytes())
    assert checkpoints.read(kept, run_id) is None and not kept.exists()
    assert "of run another-run" in caplog.text and "the run starts over" in caplog.text

    kept.write_bytes(b"not a checkpoint")
    assert main(["run", *args]) == 0  # a run that finds a broken one trains from the start
    assert "resumed_at" not in records(tmp_path, "copy")[-1]
    assert not checkpoint_files(tmp_path, "copy")


def test_only_a_stream_whose_batch_i_is_item_i_can_start_at_a_step():
    data = [{"x": torch.full((1,), float(i))} for i in range(5)]
    assert checkpoints.resumable(torch.utils.data.DataLoader(data, batch_size=None))
    assert not checkpoints.resumable(torch.utils.data.DataLoader(data, batch_size=None, shuffle=True))
    assert not checkpoints.resumable(torch.utils.data.DataLoader(data, batch_size=2))
    later = checkpoints.starting_at(torch.utils.data.DataLoader(data, batch_size=None), 3)
    assert [int(b["x"]) for b in later] == [3, 4]


def test_a_checkpoint_that_cannot_be_written_leaves_the_run_to_go_on_without(tmp_path, monkeypatch,
                                                                             every_validation, caplog):
    def full_disk(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(checkpoints, "atomic_write", full_disk)
    assert main(["run", *RUNS["copy"], *COMMON, "--results", str(tmp_path)]) == 0
    assert records(tmp_path, "copy")[0]["status"] == "ok"
    assert caplog.text.count("not written") == 1 and "goes on without checkpoints" in caplog.text


def test_a_file_where_the_checkpoints_folder_goes_is_one_clear_error_before_anything_trains(tmp_path, capsys):
    (tmp_path / "copy").mkdir()
    odd = tmp_path / "copy" / "runs.jsonl.checkpoints"
    odd.write_text("a file where the folder goes")
    assert main(["run", *RUNS["copy"], *COMMON, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "must be the folder of the runs' checkpoints" in err and f"rm {odd}" in err
    assert not (tmp_path / "copy" / "runs.jsonl").exists() or not records(tmp_path, "copy")
