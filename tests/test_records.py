"""Typed runs: every committed record loads through RunRecord and writes back the same line."""

from pathlib import Path

import pytest

from bench.store.records import ABSENT, RunConfig, RunRecord

ROOT = Path(__file__).resolve().parent.parent
STORES = sorted(ROOT.glob("results/*/*.jsonl"))


def test_there_are_committed_stores():
    assert {p.parent.name for p in STORES} >= {"audio", "copy", "synthwords"}


@pytest.mark.parametrize("path", STORES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_committed_record_round_trips_byte_for_byte(path):
    for line in path.read_text().splitlines():
        record = RunRecord.from_json(line)
        assert record.to_json() == line
        assert record.config.run_id == record.run_id  # the id is the config's hash


def test_a_field_a_record_lacks_stays_out_and_an_unknown_one_is_kept():
    line = next(iter((ROOT / "results" / "copy" / "runs.jsonl").read_text().splitlines()))
    record = RunRecord.from_json(line)
    record.extra["future_field"] = {"x": 1}
    record.epochs_trained = ABSENT
    again = RunRecord.from_json(record.to_json())
    assert again.extra == {"future_field": {"x": 1}} and again.epochs_trained is ABSENT
    assert "epochs_trained" not in again.to_dict()


def test_a_bad_record_is_refused_naming_what_is_wrong():
    with pytest.raises(ValueError, match="field 'seed' is '3', not an integer"):
        RunRecord.from_dict({"run_id": "a", "task": "copy", "profile": "quick", "arch": "rnn", "model": {},
                             "train": {}, "task_params": {}, "metrics": {}, "budget": 1, "params": 1, "seed": "3",
                             "primary_metric": "m", "higher_is_better": True, "status": "failed"})


def test_a_config_changes_its_id_with_its_seed():
    config = RunConfig("copy", "quick", {"delay": 10}, "rnn", {"arch": "rnn"}, 100, 99, {"lr": 0.01}, 0)
    assert config.with_seed(1).run_id != config.run_id and config.with_seed(0).run_id == config.run_id
