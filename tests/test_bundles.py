"""External results: `cwbench export` and `cwbench import` carry a sweep's records from one
results folder to another, checked, never replacing a stored run, and marked external in the
leaderboard until `cwbench verify` reproduces them here."""

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.store.bundles import line_sha256
from bench.store.records import RunConfig
from bench.store.results import ResultsStore
from bench.store.verified import reproduced_ids
from bench.suite.suites import load_profile, load_suite, resolve, run_id

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "results" / "copy" / "runs.jsonl"  # read only: copied before anything is written
TINY = ["--archs", "rnn", "gru", "--budgets", "400", "--steps", "3", "--param", "delay=3",
        "--param", "variable_delay=false"]


def source(tmp_path) -> Path:
    """A results folder holding a copy of the committed copy store."""
    store = tmp_path / "src" / "copy" / "runs.jsonl"
    store.parent.mkdir(parents=True)
    shutil.copyfile(COMMITTED, store)
    return tmp_path / "src"


def members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def rewrite(bundle: Path, edit_runs=None, edit_manifest=None) -> None:
    """The bundle with its runs.jsonl lines and/or manifest edited (as someone might by hand)."""
    files = members(bundle)
    lines = files["runs.jsonl"].decode().splitlines(keepends=True)
    manifest = json.loads(files["manifest.json"])
    if edit_runs:
        lines = edit_runs(lines)
    if edit_manifest:
        edit_manifest(manifest, lines)
    files = {"manifest.json": json.dumps(manifest).encode(), "runs.jsonl": "".join(lines).encode()}
    with tarfile.open(bundle, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def board(results: Path) -> pd.DataFrame:
    assert main(["leaderboard", "copy", "--results", str(results)]) == 0
    return pd.read_csv(results / "copy" / "leaderboard.csv", keep_default_na=False)


def test_the_run_id_is_the_hash_of_the_config_keys_of_a_record():
    # what import recomputes is what the runner hashes: the same keys, and the committed ids
    suite = load_suite("copy")
    config, _ = resolve("copy", "quick", load_profile(suite, "quick"))[0]
    assert RunConfig.from_dict(config.to_dict()) == config and config.run_id == run_id(config.to_dict())
    for store in sorted((ROOT / "results").glob("*/runs.jsonl")):
        for line in store.read_text().splitlines():
            record = json.loads(line)
            assert RunConfig.from_dict(record).run_id == record["run_id"], store


def test_a_bundle_gives_the_same_rows_in_another_folder_marked_external_and_twice_adds_nothing(tmp_path, capsys):
    src, dst, bundle = source(tmp_path), tmp_path / "dst", tmp_path / "copy.tar.gz"
    assert main(["export", "copy", "--results", str(src), "-o", str(bundle)]) == 0
    files = members(bundle)
    assert sorted(files) == ["manifest.json", "runs.jsonl"]
    assert files["runs.jsonl"] == COMMITTED.read_bytes()  # every line byte for byte
    manifest = json.loads(files["manifest.json"])
    assert manifest["task"] == "copy" and manifest["record_count"] == len(COMMITTED.read_text().splitlines())
    assert [e["sha256"] for e in manifest["records"]] == [line_sha256(line) for line in
                                                          COMMITTED.read_bytes().splitlines()]
    assert {"commit", "machine", "versions"} <= set(manifest["environment"])

    assert main(["import", str(bundle), "--results", str(dst)]) == 0
    assert f"imported {manifest['record_count']} records" in capsys.readouterr().out
    stored = ResultsStore(dst / "copy" / "runs.jsonl").load()
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert all(r["external"]["imported_from"] == "copy.tar.gz" and r["external"]["sha256"] == digest for r in stored)
    originals = [json.loads(line) for line in COMMITTED.read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "external"} for r in stored] == originals

    theirs, ours = board(src), board(dst)
    assert not theirs["external"].any() and ours["external"].all()
    assert ours.drop(columns="external").equals(theirs.drop(columns="external"))
    md = (dst / "copy" / "leaderboard.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "arch" not in line]
    assert len(rows) == len(ours) and all(" (external)" in line and "**" not in line for line in rows)
    assert "bundle copy.tar.gz" in md

    before = (dst / "copy" / "runs.jsonl").read_bytes()
    assert main(["import", str(bundle), "--results", str(dst)]) == 0
    out = capsys.readouterr().out
    assert (dst / "copy" / "runs.jsonl").read_bytes() == before  # nothing added, nothing replaced
    assert f"skipped {manifest['record_count']} of {manifest['record_count']} records" in out
    assert "imported 0 records" in out


def test_export_chooses_archs_and_profile_and_names_what_is_stored(tmp_path, capsys):
    src, bundle = source(tmp_path), tmp_path / "b.tar.gz"
    assert main(["export", "copy", "--results", str(src), "--archs", "gru", "lstm", "--profile", "quick",
                 "-o", str(bundle)]) == 0
    records = [json.loads(line) for line in members(bundle)["runs.jsonl"].splitlines()]
    assert records and {(r["arch"], r["profile"]) for r in records} == {("gru", "quick"), ("lstm", "quick")}
    capsys.readouterr()
    assert main(["export", "copy", "--results", str(src), "--archs", "nosuch", "-o", str(bundle)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no runs of arch nosuch" in err[0] and "stored: cwrnn/dense" in err[0]
    assert main(["export", "copy", "--results", str(tmp_path / "empty"), "-o", str(bundle)]) == 2
    assert "no results store" in capsys.readouterr().err


def tamper_metric(lines):
    record = json.loads(lines[3])
    record["metrics"]["recall_accuracy"] = 1.0
    return [*lines[:3], json.dumps(record, sort_keys=True) + "\n", *lines[4:]]


def tamper_budget(lines):
    record = json.loads(lines[3])
    record["budget"] = 99
    return [*lines[:3], json.dumps(record, sort_keys=True) + "\n", *lines[4:]]


def rehash(manifest, lines):  # a forger who also fixes the manifest's hashes
    manifest["records"] = [{"run_id": json.loads(line)["run_id"], "sha256": line_sha256(line.encode())}
                           for line in lines]


@pytest.mark.parametrize("edit_runs, edit_manifest, said", [
    (tamper_metric, None, "is not the record that was exported (its sha256 differs"),
    (tamper_budget, rehash, "its run id does not match its config"),
    (lambda lines: lines[:-1], None, "but its manifest lists"),
    (lambda lines: [lines[0], lines[0], *lines[2:]], rehash, "is in the bundle twice"),
])
def test_a_changed_bundle_is_refused_with_one_line_naming_the_record(tmp_path, capsys, edit_runs, edit_manifest,
                                                                     said):
    src, dst, bundle = source(tmp_path), tmp_path / "dst", tmp_path / "copy.tar.gz"
    assert main(["export", "copy", "--results", str(src), "-o", str(bundle)]) == 0
    changed = json.loads(COMMITTED.read_text().splitlines()[3])["run_id"]
    rewrite(bundle, edit_runs, edit_manifest)
    capsys.readouterr()
    assert main(["import", str(bundle), "--results", str(dst)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err
    if edit_runs in (tamper_metric, tamper_budget):
        assert f"record {changed} (runs.jsonl line 4)" in err[0] and "export it again" in err[0]
    assert not (dst / "copy" / "runs.jsonl").exists()  # all or nothing: not one record went in


def test_what_is_not_a_bundle_is_refused_with_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    assert main(["import", str(junk), "--results", str(tmp_path / "r")]) == 2
    assert main(["import", str(tmp_path / "missing.tar.gz"), "--results", str(tmp_path / "r")]) == 2
    with tarfile.open(junk, "w:gz") as tar:
        info = tarfile.TarInfo("../../etc/passwd")
        tar.addfile(info, io.BytesIO(b""))
    assert main(["import", str(junk), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "is not a cwbench bundle" in err[0] and "cannot read bundle" in err[1] and "'../../etc/passwd'" in err[2]
    assert not (tmp_path / "r").exists()


def test_an_imported_row_stops_being_external_once_verify_reproduces_it(tmp_path, capsys):
    src, dst, bundle = tmp_path / "src", tmp_path / "dst", tmp_path / "tiny.tar.gz"
    assert main(["run", "copy", "--results", str(src), *TINY, "--seeds", "2", "--no-leaderboard",
                 "--workers", "1"]) == 0
    assert main(["export", "copy", "--results", str(src), "-o", str(bundle)]) == 0
    # a run of the same config made here first: kept as it is, never replaced by the bundle's
    assert main(["run", "copy", "--results", str(dst), *TINY, "--archs", "rnn", "--seeds", "1",
                 "--no-leaderboard", "--workers", "1"]) == 0
    kept = (dst / "copy" / "runs.jsonl").read_bytes()
    assert main(["import", str(bundle), "--results", str(dst)]) == 0
    assert (dst / "copy" / "runs.jsonl").read_bytes().startswith(kept)
    assert "skipped 1 of 4 records" in capsys.readouterr().out
    table = board(dst)
    assert dict(zip(table["arch"], table["external"])) == {"rnn": True, "gru": True}  # rnn: one seed imported
    assert main(["verify", "copy", "--results", str(dst), "--scratch", str(tmp_path / "scratch"),
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 rows with external runs: 2 reproduced here" in out
    lines = [json.loads(line) for line in (dst / "copy" / "verified.jsonl").read_text().splitlines()]
    assert {line["verdict"] for line in lines} <= {"bitwise", "close", "consistent"}
    assert all({"run_ids", "commit", "machine", "date", "command"} <= set(line) for line in lines)
    stored = ResultsStore(dst / "copy" / "runs.jsonl").load()
    assert reproduced_ids(dst / "copy" / "runs.jsonl") == {r["run_id"] for r in stored}
    table = board(dst)
    assert not table["external"].any()
    assert "(external)" not in (dst / "copy" / "leaderboard.md").read_text()


def test_a_plugins_hash_goes_into_the_manifest_and_stays_with_its_records(tmp_path):
    src, dst, bundle = source(tmp_path), tmp_path / "dst", tmp_path / "plugin.tar.gz"
    plugin = {"plugin": "myrnn", "source": "myrnn.py", "sha256": "ab" * 32}
    store = src / "copy" / "runs.jsonl"
    records = [json.loads(line) for line in store.read_text().splitlines()]
    marked = [{**r, "external": plugin} if r["arch"] == "gru" else r for r in records]
    store.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in marked))
    assert main(["export", "copy", "--results", str(src), "-o", str(bundle)]) == 0
    assert json.loads(members(bundle)["manifest.json"])["plugins"] == [plugin]
    assert main(["import", str(bundle), "--results", str(dst)]) == 0
    stored = ResultsStore(dst / "copy" / "runs.jsonl").load()
    assert all(r["external"].get("previous") == (plugin if r["arch"] == "gru" else None) for r in stored)
    board(src)
    text = (src / "copy" / "leaderboard.md").read_text()
    assert "(external): a row with runs made outside this repository (plugin myrnn)" in text
    assert "gru (external)" in text and "lstm (external)" not in text
    board(dst)
    text = (dst / "copy" / "leaderboard.md").read_text()
    assert (f"external runs, not reproduced here: {len(records)} (bundle plugin.tar.gz; bundle plugin.tar.gz, "
            "plugin myrnn)") in text
