"""Sessions: tests, lint, tune, verify, leaderboard, site, perf, speed, and one per suite file
(bench/suites/<task>.yaml: copy, audio, timit, synthwords; `nox -s <task> -- ARGS` is `cwbench run <task> ARGS`).

The suite sessions share one virtualenv, .nox/bench, instead of one per session (minutes of
installing each): nox cannot share its own, so they run without one and call into .nox/bench.
The first creates it, torch==2.13.0 first (so that nothing resolves to another torch build),
then this project, editable; later ones install nothing while pyproject.toml and the torch pin
are unchanged (delete .nox/bench to rebuild). What a suite reads that cannot be installed (a
TIMIT copy, an audio file) is checked before anything is installed.
"""

import hashlib
import os
import re
import shutil
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint"]

PYTHON = "3.11"
TORCH = "torch==2.13.0"
ENV = Path(__file__).parent / ".nox" / "bench"
SUITES = Path(__file__).parent / "bench" / "suites"
BIN = ENV / ("Scripts" if os.name == "nt" else "bin")

# the CLI's messages, word for word (tests/test_repository.py checks that they stay so)
TIMIT_ROOT_NOT_SET = (
    "TIMIT root not set: pass --timit-root DIR or set TIMIT_ROOT; "
    "TIMIT is licensed by the LDC and not shipped"
)


def bench_env(session) -> None:
    """Create or update .nox/bench; a second in later sessions, which find its stamp."""
    stamp = ENV / "installed.txt"
    wanted = f"{TORCH} {hashlib.sha256(Path('pyproject.toml').read_bytes()).hexdigest()}\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        python = shutil.which(f"python{PYTHON}")
        if not python:
            session.error(f"Python {PYTHON} not found on PATH: the suites need it")
        session.run(python, "-m", "venv", str(ENV), external=True)
    pip = [str(BIN / "python"), "-m", "pip", "install"]
    session.run(*pip, TORCH, external=True)
    session.run(*pip, "-e", ".", external=True)
    stamp.write_text(wanted)  # last: an interrupted install is redone next time


def values(args, flag):
    """The values given as `flag VALUE` or `flag=VALUE` in a command line."""
    found = [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]
    return found + [a.partition("=")[2] for a in args if a.startswith(flag + "=")]


def check_timit(session, args):
    """needs `-- --timit-root DIR` or $TIMIT_ROOT"""
    root = (values(args, "--timit-root") or [os.environ.get("TIMIT_ROOT", "")])[-1]
    if not root:
        session.error(TIMIT_ROOT_NOT_SET)
    if not Path(root).expanduser().is_dir():
        session.error(f"TIMIT root {root} does not exist or is not a folder: pass --timit-root DIR "
                      "(or TIMIT_ROOT) naming the folder that holds TRAIN/ and TEST/")


def check_audio(session, args):
    """built-in targets unless `-- --target PATH ...`"""
    for target in values(args, "--target"):
        if not target.startswith("synth:") and not Path(target).is_file():
            problem = "is a directory, not a file" if Path(target).is_dir() else "does not exist"
            session.error(f"audio target '{target}' {problem}: pass an existing WAV/FLAC/OGG file with --target")


# what a suite reads that cannot be installed, by task; the docstring goes into `nox -l`
EARLY_CHECKS = {"timit": check_timit, "audio": check_audio}


def check_inputs(session, task, args):
    """Fail before installing anything when the data the suite reads are missing."""
    if task in EARLY_CHECKS:
        EARLY_CHECKS[task](session, args)


def cwbench(session, *args):
    bench_env(session)
    session.run(str(BIN / "cwbench"), *args, external=True)


def suite(session, task):
    args = session.posargs
    check_inputs(session, task, args)
    command = f"nox -s {task}" + (" -- " + " ".join(args) if args else "")
    cwbench(session, "run", task, *args, "--command", command)


def suite_title(path: Path) -> str:
    """A suite file's `title:` line, read without YAML (nox's own environment may not have it)."""
    found = re.search(r"^title:[ \t]*(.+?)[ \t]*$", path.read_text(encoding="utf-8"), re.MULTILINE)
    return found[1].strip("\"'") if found else path.stem


def suite_session(task: str, title: str):
    """Register `nox -s <task>`: the task's suite through `cwbench run`."""

    def run(session):
        suite(session, task)

    hint = f"; {EARLY_CHECKS[task].__doc__}" if task in EARLY_CHECKS else ""
    run.__doc__ = f"{title}; `-- ARGS` go to `cwbench run {task}`{hint}."
    if task in nox.registry.get():
        raise ValueError(f"bench/suites/{task}.yaml is named like the nox session {task}: rename the suite")
    return nox.session(name=task, venv_backend="none")(run)


@nox.session(python=PYTHON)
def tests(session):
    session.install(TORCH)  # first, so that nothing resolves to another torch build
    session.install("-e", ".[test]")
    session.env["WANDB_MODE"] = "offline"
    session.run("pytest", "-n", "2", "--durations=10", *session.posargs)


@nox.session(python=PYTHON)
def citation(session):
    """CITATION.cff is valid for cffconvert (in an environment of its own: it pins jsonschema<4)."""
    session.install("cffconvert")
    session.run("cffconvert", "--validate", "--infile", "CITATION.cff")


@nox.session(python=PYTHON)
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", "models", "tasks", "bench", "tests", "examples", "noxfile.py")


@nox.session(venv_backend="none")
def tune(session):
    """Tune a profile: its search (`-- audio --profile tuned`) or its learning-rate grid (`--profile paper`)."""
    args = session.posargs
    check_inputs(session, args[0] if args else "", args[1:])
    cwbench(session, "tune", *args)


@nox.session(venv_backend="none")
def perf(session):
    """Measure the tool itself into results/speed/: `nox -s perf -- kernels|store|interference|overhead [options]`.

    kernels: CW-RNN backends vs library RNN/LSTM/GRU; store: the results store by size;
    interference: an LSTM run fresh and after CW-RNN runs in one process; overhead: a suite run
    against the bare training loop, and a whole profile's wall time."""
    if not session.posargs:
        session.error("say which tool: nox -s perf -- kernels|store|interference|overhead [its options]")
    cwbench(session, "perf", *session.posargs)


@nox.session(venv_backend="none")
def speed(session):
    """The old name of `nox -s perf -- kernels`, kept for one release."""
    cwbench(session, "speed", *session.posargs)


@nox.session(venv_backend="none")
def verify(session):
    """Re-run a sample of a committed leaderboard and say whether each row reproduces
    (default: 5 seeds of each row of audio's quick profile); `nox -s verify -- copy --profile standard`."""
    cwbench(session, "verify", *(session.posargs or ["audio", "--profile", "quick", "--sample", "5"]))


@nox.session(venv_backend="none")
def leaderboard(session):
    """Rebuild every leaderboard table and plot from the stored runs."""
    cwbench(session, "leaderboard", *session.posargs)


@nox.session(venv_backend="none")
def site(session):
    """Build the static site of every leaderboard into site/ (`-- --out DIR`, `-- --results DIR`)."""
    cwbench(session, "site", *session.posargs)


# one session per suite file, after the tool sessions above (a suite may not take their names)
for _path in sorted(SUITES.glob("*.yaml")):
    suite_session(_path.stem, suite_title(_path))
