"""The repository stands on its own: its files point at nothing users do not have, and the
noxfile's early checks say what the CLI would."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from tasks.timit_corpus import ROOT_NOT_SET

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


def imports_of(path: Path, package: str) -> set[str]:
    """The modules of `package` that a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            found.add(node.module)
            folder = ROOT / node.module.replace(".", "/")
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if (folder / f"{alias.name}.py").is_file() or (folder / alias.name / "__init__.py").is_file())
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == package)
    return found


@pytest.mark.parametrize("package", ["models", "bench"])
def test_no_package_imports_itself_in_a_cycle(package):
    """Lazy imports inside functions count too: a cycle dodged by importing late is still a
    cycle (two modules that each need the other's rules)."""
    def dotted(path: Path) -> str:  # bench/perf/store.py -> bench.perf.store, bench/perf/__init__.py -> bench.perf
        parts = path.relative_to(ROOT).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    graph = {dotted(p): imports_of(p, package) - {package}
             for p in sorted((ROOT / package).rglob("*.py")) if dotted(p) != package}  # subpackages too
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
