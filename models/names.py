"""The names the command line lists and checks, without importing torch.

`cwbench list`, `--help` and a mistyped flag should answer at once, and torch alone takes
seconds to import. So the names are read from the plain table of models/architectures.py
(and the optimizers listed here); the heavy dicts that build things from them
(models.clockwork.BACKENDS, models.lightning.OPTIMIZERS) keep the same keys:
tests/test_cli.py checks that they agree.
"""

from __future__ import annotations

from models.architectures import ARCHITECTURES as _TABLE
from models.errors import UserInputError
from models.schedules import periods_for

# architecture -> one-line description
ARCHITECTURES = {name: entry.description for name, entry in _TABLE.items()}
# architecture -> the implementations of its recurrence, all computing the same function;
# "auto" (the default) picks the fastest for the device and shape
IMPLEMENTATIONS = {name: entry.implementations for name, entry in _TABLE.items()}
BACKENDS = IMPLEMENTATIONS["cwrnn"]  # CW-RNN implementations (models/clockwork.py), for --cw-backend
OPTIMIZERS = ("adam", "sgd")


def check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise UserInputError(
            f"unknown architecture '{arch}': choose one of {', '.join(ARCHITECTURES)} (see `cwbench list`; one "
            "from outside the repository needs --include FILE.py or its package installed: docs/extending.md)"
        )


def check_implementation(arch: str, backend: str) -> None:
    check_arch(arch)
    if backend != "auto" and backend not in IMPLEMENTATIONS[arch]:
        raise UserInputError(f"unknown {arch} implementation '{backend}': choose auto or one of "
                             f"{', '.join(IMPLEMENTATIONS[arch])}")


def parse_arch(label: str) -> tuple[str, str]:
    """'lstm' -> ('lstm', ''); 'cwrnn/fibonacci' -> ('cwrnn', 'fibonacci'); 'cwrnn' -> its default
    schedule (exponential). Only an architecture with a default schedule takes one."""
    arch, _, schedule = label.partition("/")
    check_arch(arch)
    default = _TABLE[arch].schedule
    if default:
        schedule = schedule or default
        periods_for(schedule, 1)  # validate the spec early, with its own message
    elif schedule:
        raise UserInputError(f"architecture '{arch}' takes no schedule (got '{label}'): write just '{arch}'")
    return arch, schedule
