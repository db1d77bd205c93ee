"""The names the command line lists and checks, without importing torch.

`cwbench list`, `--help` and a mistyped flag should answer at once, and torch alone takes
seconds to import. So the names live here, as plain data, and the heavy dicts that build
things from them (models.registry.ARCHITECTURES, models.clockwork.BACKENDS,
models.lightning.OPTIMIZERS) keep the same keys: tests/test_cli.py checks that they agree.
"""

from __future__ import annotations

from models.errors import UserInputError
from models.schedules import periods_for

# architecture -> one-line description (add a builder in models/registry.py too)
ARCHITECTURES = {
    "rnn": "vanilla tanh RNN (torch.nn.RNN; on CPU a compiled kernel where faster: models/library.py)",
    "lstm": "LSTM (torch.nn.LSTM: oneDNN/cuDNN kernel)",
    "gru": "GRU (torch.nn.GRU; on CPU a compiled kernel where faster: models/library.py)",
    "cwrnn": "Clockwork RNN (models.ClockworkRNN), periods from a schedule",
}
BACKENDS = ("reference", "modular", "compiled")  # CW-RNN implementations (models/clockwork.py)
# architecture -> the implementations of its recurrence, all computing the same function;
# "auto" (the default) picks the fastest for the device and shape
IMPLEMENTATIONS = {
    "rnn": ("torch", "compiled"),  # models/library.py
    "lstm": ("torch",),
    "gru": ("torch", "compiled"),  # models/library.py
    "cwrnn": BACKENDS,
}
OPTIMIZERS = ("adam", "sgd")


def check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise UserInputError(
            f"unknown architecture '{arch}': choose one of {', '.join(ARCHITECTURES)} (see `cwbench list`)"
        )


def check_implementation(arch: str, backend: str) -> None:
    check_arch(arch)
    if backend != "auto" and backend not in IMPLEMENTATIONS[arch]:
        raise UserInputError(f"unknown {arch} implementation '{backend}': choose auto or one of "
                             f"{', '.join(IMPLEMENTATIONS[arch])}")


def parse_arch(label: str) -> tuple[str, str]:
    """'lstm' -> ('lstm', ''); 'cwrnn/fibonacci' -> ('cwrnn', 'fibonacci'); 'cwrnn' -> exponential."""
    arch, _, schedule = label.partition("/")
    check_arch(arch)
    if arch == "cwrnn":
        schedule = schedule or "exponential"
        periods_for(schedule, 1)  # validate the spec early, with its own message
    elif schedule:
        raise UserInputError(f"architecture '{arch}' takes no schedule (got '{label}'): write just '{arch}'")
    return arch, schedule
