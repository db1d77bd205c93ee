"""Sessions: tests, lint, copy, audio, timit, synthwords, tune, leaderboard, speed.

Every session installs torch==2.13.0 first (the CPU build), then the project, so that
nothing resolves to another torch build. Virtualenvs are reused between runs.
"""

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint"]

TORCH = "torch==2.13.0"


def install(session, *extras):
    session.install(TORCH)
    session.install("-e", f".[{','.join(extras)}]" if extras else ".")


def suite(session, task):
    install(session)
    args = session.posargs
    command = f"nox -s {task}" + (" -- " + " ".join(args) if args else "")
    session.run("cwbench", "run", task, *args, "--command", command)


@nox.session(python="3.11")
def tests(session):
    install(session, "test")
    session.env["WANDB_MODE"] = "offline"
    session.run("pytest", "-n", "2", "--durations=10", *session.posargs)


@nox.session(python="3.11")
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", "models", "tasks", "bench", "tests", "noxfile.py")


@nox.session(python="3.11")
def copy(session):
    """The copying-task suite (quick profile unless `-- --profile standard` or `long`)."""
    suite(session, "copy")


@nox.session(python="3.11")
def audio(session):
    """Paper task 1, audio generation (built-in targets unless `-- --target PATH ...`)."""
    suite(session, "audio")


@nox.session(python="3.11")
def timit(session):
    """Paper task 2, TIMIT spoken words: needs `-- --timit-root DIR` or $TIMIT_ROOT."""
    suite(session, "timit")


@nox.session(python="3.11")
def synthwords(session):
    """The TIMIT pipeline on the offline synthetic stand-in corpus (not TIMIT)."""
    suite(session, "synthwords")


@nox.session(python="3.11")
def tune(session):
    """Tune each architecture's learning rate for a profile: `nox -s tune -- audio --profile paper`."""
    install(session)
    session.run("cwbench", "tune", *session.posargs)


@nox.session(python="3.11")
def speed(session):
    """Speed benchmark: CW-RNN backends vs library RNN/LSTM/GRU; writes results/speed/."""
    install(session)
    session.run("cwbench", "speed", *session.posargs)


@nox.session(python="3.11")
def leaderboard(session):
    """Rebuild every leaderboard table and plot from the stored runs."""
    install(session)
    session.run("cwbench", "leaderboard", *session.posargs)
