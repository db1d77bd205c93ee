"""Every command-line flag that a message in tasks/ tells the user to pass exists.

A hint naming a flag `cwbench run` does not have ("fix --offset") sends the user from
one error to another. The messages are read from the source, so a new one is checked
without a test of its own: every string literal of every .py file under tasks/ (f-strings and
literals joined across lines included) is scanned for ``--flag``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
from pathlib import Path

from bench.cli import parser
from tasks import TASKS, task_class
from tasks.timit.features import FeatureConfig

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
# a flag, and for "--param KEY=VALUE" the key
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9_-]*)(?:[ =]([a-z_][a-z0-9_]*)=)?")


def run_options() -> set[str]:
    subcommands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {option for action in subcommands.choices["run"]._actions for option in action.option_strings}


def task_params() -> set[str]:
    """What --param KEY=... can set: the constructor arguments of the tasks (TIMIT's
    feature settings arrive as **features)."""
    names = {f.name for f in dataclasses.fields(FeatureConfig)}
    for name in TASKS:
        names |= set(inspect.signature(task_class(name).__init__).parameters) - {"self"}
    return names


def message_texts(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal; an f-string's fields read as '{}'."""
    nodes = list(ast.walk(ast.parse(path.read_text(), str(path))))
    # an f-string's literal pieces are nodes of their own: read them with their f-string
    pieces = {id(v) for node in nodes if isinstance(node, ast.JoinedStr) for v in node.values}
    texts = []
    for node in nodes:
        if isinstance(node, ast.JoinedStr):
            texts.append((node.lineno, "".join(
                v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in pieces:
            texts.append((node.lineno, node.value))
    return texts


def named_flags() -> list[tuple[str, str, str | None]]:
    """(where, flag, --param key or None) for every flag named in a string of tasks/."""
    found = []
    for path in sorted(TASKS_DIR.rglob("*.py")):
        for line, text in message_texts(path):
            for match in FLAG.finditer(text):
                found.append((f"{path.relative_to(TASKS_DIR.parent)}:{line}", match[1], match[2]))
    return found


def test_the_scan_sees_the_hints():
    # the scan itself works: the hints known to exist are found
    flags = {(flag, key) for _, flag, key in named_flags()}
    assert {("--timit-root", None), ("--target", None), ("--param", "offset")} <= flags


def test_every_flag_named_in_tasks_exists_in_cwbench_run():
    options, params = run_options(), task_params()
    assert {"--param", "--target", "--timit-root"} <= options
    unknown = [f"{where}: {flag}" for where, flag, _ in named_flags() if flag not in options]
    assert not unknown, f"messages name flags `cwbench run` does not have: {unknown}"
    bad_keys = [f"{where}: --param {key}=" for where, flag, key in named_flags()
                if flag == "--param" and key is not None and key not in params]
    assert not bad_keys, f"--param keys no task takes: {bad_keys}"
    # "--param" alone, without the KEY=VALUE it needs, is no hint
    bare = [where for where, flag, key in named_flags() if flag == "--param" and key is None]
    assert not bare, f"--param named without KEY=VALUE: {bare}"


def test_a_wrong_hint_would_be_caught():
    # the check on a message of the kind it replaced
    text = "audio offset must be >= 0, got -1: fix --offset"
    assert [m[1] for m in FLAG.finditer(text)] == ["--offset"] and "--offset" not in run_options()
    assert [(m[1], m[2]) for m in FLAG.finditer("pass --param offset=N or --param length=N")] \
        == [("--param", "offset"), ("--param", "length")]
