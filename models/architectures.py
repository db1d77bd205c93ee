"""Every architecture, one entry each: the table the command line, the builder, the counter
and the budget matcher read. Adding an architecture is its module plus one line here;
tests/test_architectures.py runs the same tests on every entry.

Plain data and no torch: `cwbench list`, `--help` and budget matching read this table
without importing it. Architectures from outside the repository are added to it when their
plugin is loaded (models/plugins.py). Code is named by "module:attr" strings, imported where it is used
(`load`), as in `tasks.TASKS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

HIDDEN = "models.sizes:hidden_sizes"  # budget candidates: hidden sizes 1, 2, 3, ...


@dataclass(frozen=True)
class Architecture:
    description: str  # one line, for `cwbench list`
    implementations: tuple[str, ...]  # of its recurrence, all computing the same function; "auto" picks one
    # (spec: ModelSpec, input_size, backend) -> a module with torch.nn.RNN's calling convention (batch_first)
    build: str
    # effective parameters of the recurrent layer (readout excluded), without building it: a closed
    # form in h (hidden size) and i (counted input size), or "module:attr" of (spec, input_size) -> int;
    # "" for none: then it is built on torch's meta device and counted (a plugin's: models/plugins.py)
    count: str
    # (arch, schedule, *, cw_match, cw_modules, cw_module_size, offset) -> the ModelSpecs budget matching
    # tries, in increasing parameter count
    sizes: str = HIDDEN
    schedule: str = ""  # the default schedule of an architecture that takes one (`cwrnn/<schedule>`)
    # the initialisations of its family it takes (`--train init=NAME`; models/initialisation.py)
    inits: tuple[str, ...] = ("default",)
    # the parts of the state its forward's `h0` takes, each (1, B, n): a tensor if one part, else a
    # tuple in this order (the LSTM's (h0, c0)); with `--train learn_h0=true` each is a learnable
    # vector of n (counted in the budget), except a part named IGNORED, one forward does not read
    # (the LRU's y_0), which is passed as zeros and neither learned nor counted
    state: tuple[str, ...] = ("h",)


IGNORED = "_"  # a part of the state forward does not read (see `Architecture.state`)
GATED = ("default", "forget_bias", "chrono")  # LSTM, GRU: the keep gate's bias
ELMAN = ("default", "orthogonal", "identity")  # tanh RNN, CW-RNN: the recurrent matrix


ARCHITECTURES: dict[str, Architecture] = {
    "rnn": Architecture("vanilla tanh RNN (torch.nn.RNN; on CPU a compiled kernel where faster: models/library.py)",
                        ("torch", "compiled"), "models.library:rnn_layer", "h * i + h * h + 2 * h", inits=ELMAN),
    "lstm": Architecture("LSTM (torch.nn.LSTM: oneDNN/cuDNN kernel)",
                         ("torch",), "models.library:lstm_layer", "4 * (h * i + h * h + 2 * h)", inits=GATED,
                         state=("h", "c")),
    "gru": Architecture("GRU (torch.nn.GRU; on CPU a compiled kernel where faster: models/library.py)",
                        ("torch", "compiled"), "models.library:gru_layer", "3 * (h * i + h * h + 2 * h)", inits=GATED),
    "cwrnn": Architecture("Clockwork RNN (models.ClockworkRNN), periods from a schedule",
                          ("reference", "modular", "compiled"), "models.clockwork:cwrnn_layer",
                          "models.counting:clockwork_spec_count", "models.sizes:clockwork_sizes", "exponential",
                          inits=ELMAN),
    "indrnn": Architecture("IndRNN (Li et al. 2018): h = relu(W x + u ⊙ h + b), |u| <= 2^(1/T)",
                           ("torch", "compiled"), "models.indrnn:build", "h * i + 2 * h"),
    "phased_lstm": Architecture("Phased LSTM (Neil et al. 2016): an LSTM updated while a learnable time gate is open",
                                ("torch", "compiled"), "models.phased_lstm:build", "4 * h * i + 4 * h * h + 6 * h + 1",
                                state=("h", "c")),
    "mingru": Architecture("minGRU (Feng et al. 2024): gates read x only; a log-space parallel scan",
                           ("sequential", "scan", "compiled"), "models.mingru:build", "2 * h * i + 2 * h"),
    "lru": Architecture("LRU (Orvieto et al. 2023): complex diagonal linear recurrence, y = Re(C x) + D u",
                        ("sequential", "scan"), "models.lru:build", "2 * h * h + 3 * h * i + 3 * h",
                        state=(IGNORED, "re", "im")),
}


def load(ref: str):
    """The object a "module:attr" string names."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
