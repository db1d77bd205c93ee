"""The static site (`cwbench site`), without a browser: what is on the pages, that a name
holding HTML is written as text everywhere it is shown, rebuilds, bad folders, and
CITATION.cff (tests/test_site_browser.py opens the pages in headless Chromium)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.report import site
from bench.report.leaderboard import leaderboard_table, runs_frame
from bench.store.records import RunRecord
from bench.suite.suites import load_suite

ROOT = Path(__file__).resolve().parent.parent
EVIL_TARGET = "clips/<script>alert('target')</script>.wav"
EVIL_ARCH = "plug<img src=x onerror=alert(1)>"


def record(task="copy", arch="rnn", seed=0, value=0.5, profile="quick", budget=100, task_params=None, **extra):
    """A run record of the shape the runner stores (copy by default, audio with task='audio')."""
    if task_params is None:
        task_params = {"delay": 10, "variable_delay": False, "min_delay": 10, "eval_sequences": 64}
    primary, higher = ("recall_accuracy", True) if task == "copy" else ("nmse", False)
    r = {
        "run_id": hashlib.sha256(repr((task, arch, seed, profile, budget, task_params)).encode()).hexdigest()[:16],
        "task": task, "profile": profile, "task_params": task_params, "arch": arch,
        "model": {"arch": arch, "hidden_size": 4, "schedule": "", "periods": [], "module_sizes": [], "offset": 0,
                  "order": []},
        "budget": budget, "params": budget, "effective_params": budget, "seed": seed, "status": "ok", "reason": "",
        "train": {"steps": 10, "batch_size": 4, "optimizer": "adam", "lr": 0.01},
        "metrics": {primary: value, "ce": 1.0 + value},
        "curve": [{"step": step, f"val/{primary}": value * (2 - step / 10), "train/loss": 1.0} for step in (5, 10)],
        "artifacts": {}, "backend": "torch", "sources": {}, "baselines": {primary: 0.125},
        "primary_metric": primary, "higher_is_better": higher, "wall_time_s": 1.0, "device": "cpu",
        "git_commit": "0123456789abcdef0123456789abcdef01234567", "versions": {"torch": "2.13.0", "python": "3.11"},
        "date": "2026-01-01T00:00:00+00:00", "command": f"cwbench run {task} --profile {profile}", "learned": True,
    }
    r.update(extra)
    return r


def copy_records() -> list[dict]:
    """Three architectures whose order by mean is lstm > gru > rnn, one of them external."""
    records = [record(arch=arch, seed=seed, value=value + 0.01 * seed, learned=arch != "rnn")
               for arch, value in (("rnn", 0.2), ("lstm", 0.8), ("gru", 0.5)) for seed in range(3)]
    records += [record(arch=EVIL_ARCH, seed=seed, value=0.3 + 0.01 * seed,
                       external={"origin": "bundle <b>x</b>.tar.gz", "plugin_sha256": "ab" * 8}) for seed in range(2)]
    return records


def audio_records() -> list[dict]:
    records = []
    for target in ("synth:pluck", EVIL_TARGET):
        params = {"target": target, "sha256": hashlib.sha256(target.encode()).hexdigest(), "length": 320}
        for arch, value in (("rnn", 0.9), ("cwrnn/exponential", 0.01)):
            records += [record("audio", arch, seed, value * (1 + 0.1 * seed), task_params=params) for seed in range(2)]
    return records


def write_store(results: Path, task: str, records: list[dict], pngs=()) -> None:
    folder = results / task
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runs.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    for name in pngs:
        # a 1x1 PNG: the site copies figures, it never draws them
        (folder / name).write_bytes(bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"))


@pytest.fixture
def small_site(tmp_path):
    results, out = tmp_path / "results", tmp_path / "site"
    write_store(results, "copy", copy_records(), ["learning_curves_quick.png", "recall_accuracy_vs_delay_quick.png"])
    write_store(results, "audio", audio_records(), ["waveforms_quick.png"])
    site.build_site(results, out, log=lambda *a: None)
    return results, out


def pages(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*.html"))}


def test_pages_for_every_task_and_row_with_tables_figures_and_citation(small_site):
    _, out = small_site
    html = pages(out)
    copy_rows = [p for p in html if p.startswith("copy/rows/")]
    assert {"index.html", "copy/index.html", "audio/index.html"} <= set(html)
    assert len(copy_rows) == 4 and len([p for p in html if p.startswith("audio/rows/")]) == 2
    task = html["copy/index.html"]
    for link in copy_rows:
        assert f'href="{link.removeprefix("copy/")}"' in task
    assert (out / "copy" / "learning_curves_quick.png").read_bytes()[:4] == b"\x89PNG"
    assert 'src="learning_curves_quick.png"' in task and "<pre>cwbench run copy --profile quick\n</pre>" in task
    assert "<li>Did not learn (no run beat the trivial baseline): rnn at budget 100.</li>" in task
    assert task.count('<svg class="bar"') == 4
    row = next(html[p] for p in copy_rows if "-lstm-" in p)
    assert "0123456789abcdef0123456789abcdef01234567" in row  # the BibTeX names the commit
    assert "@misc{cwbench_copy_quick_lstm_100_" in row and "cwbench verify copy --profile quick" in row
    assert row.count("<polyline") == 3  # one learning curve per seed
    assert "@software{clockwork_bench" in html["index.html"]


def test_rows_are_the_leaderboards_rows_with_the_same_numbers(small_site):
    _, out = small_site
    table = leaderboard_table(runs_frame([RunRecord.from_dict(r) for r in copy_records()]), load_suite("copy"))
    task = (out / "copy" / "index.html").read_text()
    body = task.split('id="board-1"')[1].split("</table>")[0]
    archs = re.findall(r'<a href="rows/[^"]+">(?:<strong>)?([^<]+)', body)
    assert archs == [site_text(a) for a in table["arch"]]  # same rows, same order
    for value in table["recall_accuracy"]:
        assert f">{value}<" in body


def site_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_a_name_holding_html_is_text_on_every_page_that_shows_it(small_site):
    _, out = small_site
    html = pages(out)
    shown = {"arch": 0, "target": 0, "external": 0}
    for name, text in html.items():
        # the only script on a page is the site's own sorting code; no element came from a name
        assert text.count("<script") == 1, name
        assert "<img src=x" not in text and "<b>x</b>" not in text, name
        shown["arch"] += "plug&lt;img src=x onerror=alert(1)&gt;" in text
        shown["target"] += "&lt;script&gt;alert(&#39;target&#39;)&lt;/script&gt;" in text
        shown["external"] += "bundle &lt;b&gt;x&lt;/b&gt;.tar.gz" in text
    # the plugin: its task page and row page; the target: its task page and both rows aggregated over it;
    # the external record's origin: its row page
    assert shown == {"arch": 2, "target": 3, "external": 1}
    evil_rows = [p for p in html if p.startswith("copy/rows/quick-plug-img-src")]
    assert len(evil_rows) == 1 and re.fullmatch(r"copy/rows/[a-z0-9-]+\.html", evil_rows[0])
    assert 'class="badge">external<' in html[evil_rows[0]] and html[evil_rows[0]].count("plugin_sha256") == 1
    assert html["index.html"].count('data-sort="1">1</td>') >= 1  # copy has one external row


def test_a_rebuild_replaces_the_site_and_a_foreign_folder_is_refused(small_site, tmp_path, capsys):
    results, out = small_site
    (out / "copy" / "rows" / "stale.html").write_text("old")
    site.build_site(results, out, log=lambda *a: None)
    assert not (out / "copy" / "rows" / "stale.html").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["site", "--results", str(results), "--out", str(mine)]) == 2
    assert "not built by `cwbench site`" in capsys.readouterr().err and (mine / "notes.txt").exists()
    assert main(["site", "--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "s2")]) == 2
    assert "no stored runs" in capsys.readouterr().err


def test_cwbench_site_writes_the_default_folder(tmp_path, monkeypatch):
    results = tmp_path / "results"
    write_store(results, "copy", copy_records()[:6])
    monkeypatch.chdir(tmp_path)
    assert main(["site", "--results", "results"]) == 0
    assert (tmp_path / "site" / "copy" / "index.html").is_file()


def test_citation_file_agrees_with_the_package_and_the_site():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert cff["version"] == version == site.SOFTWARE["version"]
    assert cff["title"].startswith(site.SOFTWARE["title"])
    assert [a["name"] for a in cff["authors"]] == [site.SOFTWARE["author"]]
    assert cff["license"] == re.search(r'license = \{ text = "([^"]+)"', pyproject).group(1)
    readme = (ROOT / "README.md").read_text()
    assert "## How to cite" in readme and "CITATION.cff" in readme
    assert "\n".join("    " + line for line in site.software_bibtex().splitlines()) in readme


def test_citation_file_is_valid_for_cffconvert():
    """cffconvert pins jsonschema<4, which the project's environment cannot take beside its
    other dependencies: it is used where importable (in process) or installed as a command."""
    path = ROOT / "CITATION.cff"
    if importlib.util.find_spec("cffconvert") is not None:
        command = [sys.executable, "-c", "import sys; from cffconvert.cli.cli import cli; sys.exit(cli())"]
    elif shutil.which("cffconvert"):
        command = [shutil.which("cffconvert")]
    else:
        pytest.skip("cffconvert is not installed (pip install cffconvert, or put its command on PATH)")
    done = subprocess.run([*command, "--validate", "--infile", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_interval_bars_share_one_axis_and_go_logarithmic_over_two_decades():
    bars, log = site.interval_bars([(0.5, (0.4, 0.6)), (0.2, (0.1, 0.3)), (None, None), (0.3, None)])
    assert not log and bars[2] is None and "lo" not in bars[3]
    assert bars[1]["lo"] < bars[1]["mean"] < bars[1]["hi"] <= bars[0]["lo"] < bars[0]["mean"]
    assert bars[1]["lo"] == 4 and bars[0]["hi"] == site.BAR_WIDTH - 4  # the extremes of the table at the ends
    bars, log = site.interval_bars([(0.003, (0.002, 0.004)), (30.0, (1.0, 52.0))])
    assert log and bars[0]["hi"] < bars[1]["lo"]


def test_learning_curve_draws_each_run_and_the_baseline():
    runs = [record(seed=s, value=0.5) for s in range(2)]
    runs[1]["curve"].append({"step": 12, "val/recall_accuracy": float("nan")})  # a diverged point is left out
    runs = [RunRecord.from_dict(r) for r in runs]
    chart = site.curve_chart(runs, "recall_accuracy", ["a", "b"], baseline=0.125)
    assert [len(line["points"].split()) for line in chart["lines"]] == [2, 2]
    assert chart["top"] < chart["baseline"] <= chart["top"] + chart["h"] and not chart["log"]
    assert site.curve_chart(runs, "ce", ["a", "b"]) is None  # no validation curve of that metric
