"""The repository stands on its own: its files point at nothing users do not have, the
noxfile has a session per suite whose early checks say what the CLI would, and no package
imports itself in a cycle."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bench.suite.suites import load_suite, suite_names
from tasks.timit.corpus import ROOT_NOT_SET

ROOT = Path(__file__).resolve().parent.parent
# the project's internal notes: users do not have them, so nothing may send them there
INTERNAL_NOTES = re.compile(rb"(DESIGN|PAPER)\.md")


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in out.decode().split("\0") if name]


def test_no_file_points_at_internal_notes():
    files = [f for f in tracked_files() if not f.startswith("tests/") and (ROOT / f).is_file()]
    assert "README.md" in files
    pointing = [f for f in files if INTERNAL_NOTES.search((ROOT / f).read_bytes())]
    assert pointing == [], "these files mention notes that are not in the repository"


def test_readme_links_to_the_docs_and_they_exist():
    readme = (ROOT / "README.md").read_text()
    for page in ["docs/cwrnn.md", "docs/protocol.md", "docs/paper.md", "docs/performance.md", "docs/extending.md"]:
        assert f"({page})" in readme
        assert (ROOT / page).is_file()


def test_the_noxfile_says_what_the_cli_says_when_timit_is_missing():
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                 and isinstance(node.value, ast.Constant)}
    assert constants["TIMIT_ROOT_NOT_SET"] == ROOT_NOT_SET


def load_noxfile(monkeypatch, path: Path = ROOT / "noxfile.py"):
    """The noxfile as a module, with a stand-in for nox (not installed with the tests) that
    records each session as name -> (function, decorator arguments)."""
    sessions = {}

    def session(func=None, **kwargs):
        def register(f):
            sessions[kwargs.get("name") or f.__name__] = (f, kwargs)
            return f
        return register(func) if func else register

    nox = types.ModuleType("nox")
    nox.options, nox.session, nox.registry = types.SimpleNamespace(), session, types.SimpleNamespace(get=sessions.copy)
    monkeypatch.setitem(sys.modules, "nox", nox)
    spec = importlib.util.spec_from_file_location("noxfile_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "bench_env", lambda session: None)  # installs nothing
    return module, sessions


class FakeSession:
    def __init__(self, *posargs):
        self.posargs, self.runs = list(posargs), []

    def run(self, *args, **kwargs):
        self.runs.append(args)

    def error(self, message):
        raise RuntimeError(message)


def test_every_suite_file_is_a_nox_session_that_runs_its_suite(monkeypatch):
    noxfile, sessions = load_noxfile(monkeypatch)
    for task in suite_names():
        run, options = sessions[task]
        assert options == {"name": task, "venv_backend": "none"}
        assert load_suite(task)["title"] in run.__doc__
    session = FakeSession("--profile", "standard")
    sessions["copy"][0](session)
    assert session.runs == [(str(noxfile.BIN / "cwbench"), "run", "copy", "--profile", "standard",
                             "--command", "nox -s copy -- --profile standard")]
    monkeypatch.delenv("TIMIT_ROOT", raising=False)
    with pytest.raises(RuntimeError, match=re.escape(ROOT_NOT_SET)):  # before anything is installed
        sessions["timit"][0](FakeSession())
    with pytest.raises(RuntimeError, match="audio target '/nonexistent.wav' does not exist"):
        sessions["audio"][0](FakeSession("--target", "/nonexistent.wav"))
    assert {"tests", "lint", "tune", "verify", "leaderboard"} <= set(sessions)


def test_a_suite_may_not_take_a_tool_sessions_name(tmp_path, monkeypatch):
    (tmp_path / "bench" / "suites").mkdir(parents=True)
    (tmp_path / "noxfile.py").write_text((ROOT / "noxfile.py").read_text())
    (tmp_path / "bench" / "suites" / "lint.yaml").write_text("task: lint\ntitle: a suite called lint\n")
    with pytest.raises(ValueError, match="bench/suites/lint.yaml is named like the nox session lint"):
        load_noxfile(monkeypatch, tmp_path / "noxfile.py")


def module_name(path: Path) -> str:
    """The dotted name of a source file: tasks/copy/task.py is tasks.copy.task, a package's
    __init__.py is the package (tasks/copy/__init__.py is tasks.copy)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    where = ROOT / name.replace(".", "/")
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def imports_of(path: Path, package: str) -> set[str]:
    """The modules of `package` that a file imports, at its top or inside a function;
    `from a.b import c` names a.b, and a.b.c too where c is a module."""
    found = set()
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]  # relative imports start from the file's package
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join([*here[:len(here) - node.level + 1], *[node.module or ""]]).strip(".") \
                if node.level else node.module
            if base and base.split(".")[0] == package:
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names if is_module(f"{base}.{alias.name}"))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == package)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Every module of `package`, subpackages and their __init__ included, and what it imports."""
    return {module_name(p): imports_of(p, package) - {module_name(p)} for p in sorted((ROOT / package).rglob("*.py"))}


def test_the_import_graph_sees_subpackages_and_lazy_imports():
    graph = import_graph("tasks")
    assert {"tasks", "tasks.base", "tasks.copy", "tasks.copy.task", "tasks.timit.corpus"} <= set(graph)
    assert "tasks.copy.data" in graph["tasks.copy.task"]  # imported inside datamodule()
    assert graph["tasks.timit.synth"] == {"tasks.timit.corpus"}


@pytest.mark.parametrize("package", ["models", "tasks", "bench"])
def test_no_package_imports_itself_in_a_cycle(package):
    """Lazy imports inside functions count too: a cycle dodged by importing late is still a
    cycle (two modules that each need the other's rules)."""
    graph = import_graph(package)
    state: dict[str, str] = {}

    def visit(name, path):
        if state.get(name) == "open":
            raise AssertionError("import cycle: " + " -> ".join([*path, name]))
        if state.get(name) == "done":
            return
        state[name] = "open"
        for child in sorted(graph.get(name, ())):
            visit(child, [*path, name])
        state[name] = "done"

    for name in sorted(graph):
        visit(name, [])


# bench's subpackages by concern, lowest first: a module imports only from its own
# subpackage and those below it (cli.py and arguments.py, the front door, sit on top)
BENCH_LAYERS = ["store", "suite", "sweep", "report", "perf"]


def test_bench_subpackages_import_only_downwards():
    wrong = []
    for layer, name in enumerate(BENCH_LAYERS):
        allowed = {f"bench.{below}" for below in BENCH_LAYERS[:layer + 1]} | {"bench.arguments"}
        for path in sorted((ROOT / "bench" / name).rglob("*.py")):
            for module in imports_of(path, "bench"):
                if module != "bench" and not any(module == a or module.startswith(a + ".") for a in allowed):
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == [], "an import goes up or sideways: " + "; ".join(wrong)
    flat = sorted(p.name for p in (ROOT / "bench").glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "arguments.py", "cli.py"], "a module outside the subpackages"


def test_the_sweep_driver_does_not_load_lightning():
    """The driver claims, dispatches and stores runs; training (Lightning) happens in jobs."""
    import sys as _sys

    done = subprocess.run([_sys.executable, "-c", "import sys, bench.sweep.runner; "
                           "print('pytorch_lightning' in sys.modules, 'lightning' in sys.modules)"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
