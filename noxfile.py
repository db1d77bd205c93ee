"""Sessions: tests, lint, the suites (copy, audio, timit, synthwords, tune, verify, leaderboard), perf and speed.

The suite sessions share one virtualenv, .nox/bench, instead of one per session (minutes of
installing each): nox cannot share its own, so they run without one and call into .nox/bench.
The first creates it, torch==2.13.0 first (so that nothing resolves to another torch build),
then this project, editable; later ones install nothing while pyproject.toml and the torch pin
are unchanged (delete .nox/bench to rebuild). What a suite reads that cannot be installed (a
TIMIT copy, an audio file) is checked before anything is installed.
"""

import hashlib
import os
import shutil
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint"]

PYTHON = "3.11"
TORCH = "torch==2.13.0"
ENV = Path(__file__).parent / ".nox" / "bench"
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


def check_inputs(session, task, args):
    """Fail before installing anything when the data the suite reads are missing."""
    if task == "timit":
        root = (values(args, "--timit-root") or [os.environ.get("TIMIT_ROOT", "")])[-1]
        if not root:
            session.error(TIMIT_ROOT_NOT_SET)
        if not Path(root).expanduser().is_dir():
            session.error(f"TIMIT root {root} does not exist or is not a folder: pass --timit-root DIR "
                          "(or TIMIT_ROOT) naming the folder that holds TRAIN/ and TEST/")
    if task == "audio":
        for target in values(args, "--target"):
            if not target.startswith("synth:") and not Path(target).is_file():
                problem = "is a directory, not a file" if Path(target).is_dir() else "does not exist"
                session.error(f"audio target '{target}' {problem}: pass an existing WAV/FLAC/OGG file with --target")


def cwbench(session, *args):
    bench_env(session)
    session.run(str(BIN / "cwbench"), *args, external=True)


def suite(session, task):
    args = session.posargs
    check_inputs(session, task, args)
    command = f"nox -s {task}" + (" -- " + " ".join(args) if args else "")
    cwbench(session, "run", task, *args, "--command", command)


@nox.session(python=PYTHON)
def tests(session):
    session.install(TORCH)  # first, so that nothing resolves to another torch build
    session.install("-e", ".[test]")
    session.env["WANDB_MODE"] = "offline"
    session.run("pytest", "-n", "2", "--durations=10", *session.posargs)


@nox.session(python=PYTHON)
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", "models", "tasks", "bench", "tests", "examples", "noxfile.py")


@nox.session(venv_backend="none")
def copy(session):
    """The copying-task suite (quick profile unless `-- --profile standard` or `long`)."""
    suite(session, "copy")


@nox.session(venv_backend="none")
def audio(session):
    """Paper task 1, audio generation (built-in targets unless `-- --target PATH ...`)."""
    suite(session, "audio")


@nox.session(venv_backend="none")
def timit(session):
    """Paper task 2, TIMIT spoken words: needs `-- --timit-root DIR` or $TIMIT_ROOT."""
    suite(session, "timit")


@nox.session(venv_backend="none")
def synthwords(session):
    """The TIMIT pipeline on the offline synthetic stand-in corpus (not TIMIT)."""
    suite(session, "synthwords")


@nox.session(venv_backend="none")
def tune(session):
    """Tune each architecture's learning rate for a profile: `nox -s tune -- audio --profile paper`."""
    args = session.posargs
    check_inputs(session, args[0] if args else "", args[1:])
    cwbench(session, "tune", *args)


@nox.session(venv_backend="none")
def perf(session):
    """Measure the tool itself into results/speed/: `nox -s perf -- kernels|store|interference [options]`.

    kernels: CW-RNN backends vs library RNN/LSTM/GRU; store: the results store by size;
    interference: an LSTM run fresh and after CW-RNN runs in one process."""
    if not session.posargs:
        session.error("say which tool: nox -s perf -- kernels|store|interference [its options]")
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
