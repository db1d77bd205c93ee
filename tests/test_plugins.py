"""Architectures from outside the repository (models/plugins.py, docs/extending.md).

The worked example (examples/my_cell.py) goes from its file to a row of the copy leaderboard
with the commands docs/extending.md gives, in worker processes; its records say where its code
came from and its hash (`external`), and `cwbench verify` refuses to call its row verified once
the file has changed. An installed package's entry point is found by `cwbench list` (a
real `pip install -e` into a throwaway environment; and a *.dist-info folder with
entry_points.txt on the path, what `pip install` writes, for a run in this process). A plugin that
breaks the contract is refused with one line before anything trains. Budgets of a plugin are
matched on meta-device counts, to the size trying every size would give; run ids do not
depend on where the plugin's file is, and the committed runs' ids are what their commands resolve to.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.cli import main, profile_from_args, read_run_command
from models import architectures, names, plugins

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "my_cell.py"
TINY = ["--steps", "2", "--seeds", "1", "--param", "variable_delay=false"]  # one run of two steps


@pytest.fixture(autouse=True)
def table_as_it_was():
    """A plugin loaded by a test leaves the architecture table as it found it (the fixture is
    the function that puts it back)."""
    saved = [(table, dict(table)) for table in (architectures.ARCHITECTURES, names.ARCHITECTURES,
                                                 names.IMPLEMENTATIONS, plugins.LOADED, plugins.OWNER)]

    def restore():
        for table, contents in saved:
            table.clear()
            table.update(contents)

    yield restore
    restore()


def env_with_path(*paths) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT, *paths))}


def records(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / "copy" / "runs.jsonl").read_text().splitlines()]


def test_the_worked_example_becomes_a_row_of_the_copy_leaderboard_in_worker_processes(tmp_path):
    """docs/extending.md's commands, as written but with tiny settings, in two worker processes
    (spawned: each loads the plugin again from what its job carries)."""
    results = tmp_path / "R"
    run = [sys.executable, "-m", "bench", "run", "copy", "--include", "examples/my_cell.py", "--archs", "my_cell",
           "--results", str(results), "--steps", "2", "--seeds", "2", "--workers", "2", "--no-leaderboard"]
    done = subprocess.run(run, cwd=ROOT, env=env_with_path(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "2 local worker processes" in done.stdout
    found = records(results)
    assert len(found) == 4 and {r["status"] for r in found} == {"ok"}
    digest = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    for r in found:
        assert r["arch"] == r["plugin"] == "my_cell" and r["backend"] == "torch"
        assert r["external"] == {"plugin": "my_cell", "source": "file examples/my_cell.py", "sha256": digest}
        assert r["effective_params"] == r["params"] and abs(r["params"] - 10000) <= 1000
    board = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "copy", "--results", str(results)],
                           cwd=ROOT, env=env_with_path(), capture_output=True, text=True, timeout=600)
    assert board.returncode == 0, board.stderr
    table = (results / "copy" / "leaderboard.md").read_text()
    assert "| my_cell " in table and "--include examples/my_cell.py" in table  # its row, and how to reproduce it


def test_verify_refuses_a_plugin_row_whose_code_has_changed(tmp_path, capsys):
    cell = tmp_path / "my_cell.py"
    cell.write_text(EXAMPLE.read_text())
    results = tmp_path / "R"
    assert main(["run", "copy", "--include", str(cell), "--archs", "my_cell", "--results", str(results),
                 "--no-leaderboard", *TINY]) == 0
    verify = ["verify", "copy", "--results", str(results)]
    assert main([*verify, "--scratch", str(tmp_path / "same")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("quick my_cell"))
    assert row.endswith("bitwise")  # the same code, seed and machine

    cell.write_text(cell.read_text() + "\n# a changed line\n")
    assert main([*verify, "--scratch", str(tmp_path / "changed")]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("quick my_cell"))
    assert "NOT VERIFIED (plugin my_cell's code has changed since its runs: sha256" in row
    assert not (tmp_path / "changed" / "copy" / "runs.jsonl").exists()  # nothing rerun for it


BROKEN = {
    "not causal": ("""
        class Cell(nn.Module):
            def __init__(self, input_size, hidden_size):
                super().__init__()
                self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
            def forward(self, x, h0=None):  # reads the sequence backwards
                out = self.rnn(x.flip(1))[0].flip(1)
                return out, out[:, -1:].transpose(0, 1)
        """, "architecture 'cell' refused: not causal: changing the inputs after step 0 changed the outputs"),
    "time first": ("""
        class Cell(nn.Module):
            def __init__(self, input_size, hidden_size):
                super().__init__()
                self.rnn = nn.RNN(input_size, hidden_size)  # batch_first=False
            def forward(self, x, h0=None):
                return self.rnn(x.transpose(0, 1), h0)
        """, "architecture 'cell' refused: outputs have shape (9, 3, 5) for x of shape (3, 9, 4)"),
    "outputs only": ("""
        class Cell(nn.RNN):
            def __init__(self, input_size, hidden_size):
                super().__init__(input_size, hidden_size, batch_first=True)
            def forward(self, x, h0=None):
                return super().forward(x, h0)[0]
        """, "architecture 'cell' refused: forward(x) returned Tensor, not a pair (outputs, h_last)"),
    "unused parameter": ("""
        class Cell(nn.RNN):
            def __init__(self, input_size, hidden_size):
                super().__init__(input_size, hidden_size, batch_first=True)
                self.unused = nn.Parameter(torch.zeros(3))
        """, "architecture 'cell' refused: no gradient reaches parameter(s) unused"),
    "wrong signature": ("""
        class Cell(nn.Module):
            def __init__(self, hidden_size):
                super().__init__()
        """, "architecture 'cell' refused: building or running it at input size 4, hidden size 5 raised TypeError"),
    "import error": ("""
        raise RuntimeError("no GPU here\\nsecond line")
        """, "importing it raised RuntimeError: no GPU here (fix the plugin, or leave it out)"),
    "no table": ("""
        CELLS = {}
        """, "no ARCHITECTURES dict naming its architectures"),
    "a built-in name": ("""
        ARCHITECTURES = {"lstm": nn.LSTM}
        """, "architecture 'lstm' is already a built-in architecture: rename it"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_plugin_that_breaks_the_contract_is_refused_in_one_line_before_anything_trains(case, tmp_path, capsys):
    code, said = BROKEN[case]
    path = tmp_path / "bad.py"
    table = "" if "ARCHITECTURES" in code or "CELLS" in code else 'ARCHITECTURES = {"cell": Cell}\n'
    path.write_text("import torch\nfrom torch import nn\n" + textwrap.dedent(code) + table)
    results = tmp_path / "R"
    assert main(["run", "copy", "--include", str(path), "--archs", "rnn", "--results", str(results), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: plugin bad (file {path}): ") and said in err, err
    assert not results.exists()  # nothing trained, nothing stored
    assert "cell" not in names.ARCHITECTURES  # and nothing of it registered


def test_an_unknown_architecture_says_how_to_bring_one(capsys):
    assert main(["run", "copy", "--archs", "my_cell"]) == 2
    assert "--include FILE.py or its package installed: docs/extending.md" in capsys.readouterr().err


def write_package(site: Path) -> None:
    """A tiny installed package declaring two plugins, as `pip install` leaves one: its code,
    and a dist-info folder whose entry_points.txt names them (one by its ARCHITECTURES dict,
    one by its module)."""
    (site / "tinycells").mkdir(parents=True)
    (site / "tinycells" / "__init__.py").write_text(textwrap.dedent("""
        from torch import nn

        class TinyRNN(nn.RNN):
            '''A tanh RNN from an installed package'''
            def __init__(self, input_size, hidden_size):
                super().__init__(input_size, hidden_size, batch_first=True)

        ARCHITECTURES = {"tiny_rnn": TinyRNN}
        """))
    (site / "tinycells" / "more.py").write_text(textwrap.dedent("""
        from torch import nn

        class TinyGRU(nn.GRU):
            '''A GRU from an installed package'''
            def __init__(self, input_size, hidden_size):
                super().__init__(input_size, hidden_size, batch_first=True)

        ARCHITECTURES = {"tiny_gru": TinyGRU}
        """))
    dist = site / "tinycells-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinycells\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[clockwork_bench.architectures]\ntiny = tinycells:ARCHITECTURES\n"
                                           "tiny_more = tinycells.more\n")


def test_a_package_installed_with_pip_install_e_shows_up_in_cwbench_list(tmp_path):
    """A real `pip install -e` of a tiny package, into a throwaway environment that sees this
    one's packages (a .pth file) but leaves it untouched; offline: no index, no build isolation."""
    if not all(importlib.util.find_spec(name) for name in ("pip", "setuptools")):  # found, not imported
        pytest.skip("pip install -e needs pip and setuptools in this environment")
    write_package(tmp_path / "src")
    shutil.rmtree(tmp_path / "src" / "tinycells-0.3.dist-info")  # pip writes its own
    (tmp_path / "src" / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "tinycells"
        version = "0.3"

        [project.entry-points."clockwork_bench.architectures"]
        tiny = "tinycells:ARCHITECTURES"
        tiny_more = "tinycells.more"

        [tool.setuptools]
        packages = ["tinycells"]
        """))
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=300)
    python = env / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "parent.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(tmp_path / "src"), "--no-deps",
                              "--no-build-isolation", "--no-index"], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    done = subprocess.run([str(python), "-m", "bench", "list"], cwd=ROOT, env=env_with_path(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0]: " ".join(line.split()[1:]) for line in done.stdout.splitlines() if line.strip()}
    assert listed["tiny_rnn"] == "A tanh RNN from an installed package (external: entry point tinycells 0.3)"
    assert listed["tiny_gru"] == "A GRU from an installed package (external: entry point tinycells 0.3)"


def test_an_entry_point_plugin_runs_with_its_package_and_module_hash(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_package(site)
    monkeypatch.syspath_prepend(str(site))
    assert main(["run", "copy", "--archs", "tiny_rnn", "tiny_gru", "--results", str(tmp_path / "R"),
                 "--no-leaderboard", *TINY]) == 0
    external = {r["arch"]: r["external"] for r in records(tmp_path / "R")}
    for arch, plugin, module in (("tiny_rnn", "tiny", "__init__.py"), ("tiny_gru", "tiny_more", "more.py")):
        digest = hashlib.sha256((site / "tinycells" / module).read_bytes()).hexdigest()
        assert external[arch] == {"plugin": plugin, "source": "entry point tinycells 0.3", "sha256": digest}
    for module in ("tinycells", "tinycells.more"):  # imported from this test's folder only
        monkeypatch.delitem(sys.modules, module)


def test_a_plugins_budget_is_the_size_whose_built_count_is_closest(tmp_path):
    from bench.suite.budget import match_budget
    from models.counting import count_parameters, readout_count

    plugins.load_all([EXAMPLE])
    built = {h: count_parameters(plugins.construct(plugins.LOADED["my_cell"].classes["my_cell"], 3, h))
             + readout_count(h, 2) for h in range(1, 60)}
    for budget in (30, 500, 2001, 3333):
        m = match_budget("my_cell", budget, 3, 2, tolerance=1.0)
        best = min(built, key=lambda h: (abs(built[h] - budget), h))
        assert (m.spec.hidden_size, m.params) == (best, built[best])


def parse(words):
    from bench.cli import parser

    args = parser().parse_args(words)
    return profile_from_args(args)


def test_run_ids_name_the_plugin_but_not_where_its_file_is(tmp_path, table_as_it_was):
    from bench.suite.suites import resolve

    moved = tmp_path / "elsewhere" / "my_cell.py"
    moved.parent.mkdir()
    moved.write_text(EXAMPLE.read_text() + "\n# edited\n")
    ids = []
    for path in (EXAMPLE, moved):  # each in a process of its own (in one, two files of one name are refused)
        table_as_it_was()
        _, profile = parse(["run", "copy", "--include", str(path), "--archs", "my_cell", "rnn"])
        runs = resolve("copy", "quick", profile)
        assert {c.arch: c.plugin for c, _ in runs} == {"my_cell": "my_cell", "rnn": ""}
        ids.append([c.run_id for c, _ in runs])
    assert ids[0] == ids[1]


def test_the_committed_runs_are_what_their_recorded_commands_resolve_to():
    """resolve() adds a plugin's name to its configs only: every committed run id comes out."""
    from bench.report.verify import rebuild
    from bench.store.records import RunRecord

    checked = 0
    for path in sorted(ROOT.glob("results/*/runs.jsonl")):
        found = [RunRecord.from_json(line) for line in path.read_text().splitlines()]
        plan = rebuild(found, path.parent.name, ROOT / "results", read_run_command)
        missing = [r.run_id for r in found if r.run_id not in plan]
        assert not missing, (path, missing[:3])
        checked += len(found)
    assert checked > 0


def test_two_plugin_files_of_one_name_are_refused(tmp_path, capsys):
    other = tmp_path / "my_cell.py"
    other.write_text(EXAMPLE.read_text())
    assert main(["list", "--include", str(EXAMPLE), "--include", str(other)]) == 2
    assert capsys.readouterr().err.startswith("error: two plugins are named my_cell: file ")
