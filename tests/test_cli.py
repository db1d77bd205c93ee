"""The command line answers at once where it has nothing to run.

`cwbench --help`, `list` and a mistyped argument must not import torch and the rest of the
training stack (seconds on a busy laptop). Guarded by the import graph, not by timing: a
fresh interpreter runs each command and reports which heavy packages it imported. The light
names the CLI reads (models/names.py, tasks.TASKS) are checked against the heavy dicts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.cli import main
from bench.suite.suites import load_suite, suite_names
from models import names

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["torch", "pytorch_lightning", "lightning", "pandas", "seaborn", "matplotlib", "wandb", "datasets",
         "librosa", "numba", "scipy", "soundfile", "jinja2"]

# (arguments, exit status): every one must finish without a heavy import
FAST = [
    (["--help"], 0),
    (["list"], 0),
    (["run", "--help"], 0),
    (["tune", "--help"], 0),
    (["leaderboard", "--help"], 0),
    (["site", "--help"], 0),
    (["export", "--help"], 0),
    (["import", "--help"], 0),
    (["perf", "--help"], 0),
    (["perf", "kernels", "--help"], 0),
    (["perf", "store", "--help"], 0),
    (["perf", "interference", "--help"], 0),
    (["speed", "--help"], 0),
    (["frobnicate"], 2),  # argparse errors
    (["run", "copy", "--budgets", "0"], 2),
    (["speed", "--device", "tpu"], 2),
    (["perf"], 2),
    (["perf", "kernels", "--device", "tpu"], 2),
    (["perf", "interference", "--device", "cuda"], 2),  # a tool takes only its own options
    (["perf", "store", "--sizes", "0"], 2),
    (["speed", "--interference"], 2),  # the old flags say where the tools went
    (["speed", "--store", "--sizes", "10"], 2),
    (["run", "nosuchtask"], 2),  # checked by the CLI before anything heavy
    (["run", "copy", "--profile", "nosuchprofile"], 2),
    (["tune", "audio", "--profile", "nosuchprofile"], 2),
    (["run", "copy", "--archs", "nosucharch"], 2),
    (["run", "copy", "--archs", "cwrnn/nosuchschedule"], 2),
    (["run", "copy", "--train", "optimizer=nosuchoptimizer"], 2),
    (["leaderboard", "nosuchtask"], 2),
    (["export", "nosuchtask", "-o", "bundle.tar.gz"], 2),
    (["export", "copy"], 2),  # no -o
    (["import", "/nonexistent/bundle.tar.gz"], 2),
    # checked by the task's constructor, the suite and budget matching: none needs torch
    (["run", "copy", "--param", "delay=0"], 2),
    (["run", "copy", "--param", "dealy=20"], 2),
    (["run", "copy", "--budgets", "30"], 2),
    (["run", "timit"], 2),  # no --timit-root and no TIMIT_ROOT (emptied below)
    (["run", "audio", "--target", "/nonexistent.wav"], 2),
]

PROBE = """
import contextlib, io, json, sys
from bench.cli import main
heavy = set(json.loads(sys.argv[1]))
found = {}
for argv, _ in json.loads(sys.argv[2]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exit:
            status = exit.code
    found[" ".join(argv)] = [status, sorted({m.split(".")[0] for m in sys.modules} & heavy)]
print(json.dumps(found))
"""


def test_help_list_and_argument_errors_import_nothing_heavy():
    # one fresh interpreter for all: a command that imports torch shows up at that command
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TIMIT_ROOT": ""}
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY), json.dumps(FAST)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    found = json.loads(out)
    assert {k: v[1] for k, v in found.items() if v[1]} == {}
    assert {k: v[0] for k, v in found.items()} == {" ".join(argv): status for argv, status in FAST}


def test_list_shows_every_name(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*names.ARCHITECTURES, "exponential", "exponential:B", "linear", "fibonacci", "dense"]:
        assert f"  {name} " in out
    for task in suite_names():
        for profile in load_suite(task)["profiles"]:
            assert f"  {task:<11} {profile} " in out
    assert "optimizers: adam, sgd" in out


def test_light_names_agree_with_what_builds():
    # the architectures' names build what they say: tests/test_architectures.py, for every entry
    from models.clockwork import BACKENDS
    from models.lightning import OPTIMIZERS
    from tasks import TASKS, task_class
    from tasks.base import Task

    assert names.BACKENDS == tuple(BACKENDS)
    assert names.OPTIMIZERS == tuple(OPTIMIZERS)
    assert sorted(TASKS) == suite_names()  # a task without a suite file (or the reverse) cannot be run
    for name in TASKS:
        assert issubclass(task_class(name), Task)

