"""The initialisations of an architecture's family (`--train init=NAME`) and a learnable initial
state (`--train learn_h0=true`): both recorded training settings, in a run's config (and so its
id) only when not at their default.

An initialisation here runs after `models.registry.initialise` (init_std, bias_init,
lstm_forget_bias), on the recurrent layer as built; "default" changes nothing and draws nothing,
so a run without `init` is the run it always was. Each architecture's entry in
models/architectures.py names the ones it takes (`inits`), and a suite refuses any other
(bench/suite/suites.py: `check_init`). Every implementation of an architecture (torch's, the
compiled kernels, the CW-RNN's backends) computes with the module's own parameters, so what is
set here is what every backend runs.

Gate order, as torch stores the gates in weight_*_l0 and bias_*_l0 (n = hidden size):
LSTM (i, f, g, o), GRU (r, z, n) with h' = (1 - z) * n + z * h. The gate that keeps the old
state is the LSTM's f and the GRU's z: slice [n, 2n) of both. A bias is set on bias_ih and the
same slice of bias_hh set to 0, so that their sum, all the layer ever uses, is exactly the value.

Random draws (chrono, orthogonal) come from torch's global generator, which each run seeds
(pl.seed_everything), so they are the same for the same seed.

`INITIALISATIONS` is the registry: name -> "module:attr" of a function (rnn, task) -> None.
"""

from __future__ import annotations

import torch
from torch import nn

from models.architectures import ARCHITECTURES, IGNORED, load

INITIALISATIONS: dict[str, str] = {
    "default": "models.initialisation:default",
    "forget_bias": "models.initialisation:forget_bias",
    "chrono": "models.initialisation:chrono",
    "orthogonal": "models.initialisation:orthogonal",
    "identity": "models.initialisation:identity",
}

KEEP_GATE = 1  # LSTM (i, f, g, o): f; GRU (r, z, n): z
INPUT_GATE = 0  # LSTM: i


def initialise_family(name: str, rnn: nn.Module, task) -> None:
    """Apply the initialisation `name` (a key of INITIALISATIONS) to the recurrent layer."""
    load(INITIALISATIONS[name])(rnn, task)


def default(rnn: nn.Module, task) -> None:
    """Nothing: the library's initialisation (or init_std's) stays, and no number is drawn."""


def gate(rnn: nn.Module, index: int) -> slice:
    """The rows of gate `index` in a torch LSTM's or GRU's stacked weights and biases."""
    if not isinstance(rnn, (nn.LSTM, nn.GRU)):
        raise TypeError(f"a gate initialisation needs torch's LSTM or GRU, not {type(rnn).__name__}")
    n = rnn.hidden_size
    return slice(index * n, (index + 1) * n)


@torch.no_grad()
def set_bias(rnn: nn.Module, rows: slice, value) -> None:
    """bias_ih[rows] = value and bias_hh[rows] = 0: their sum is exactly `value`."""
    rnn.bias_ih_l0[rows] = value
    rnn.bias_hh_l0[rows] = 0.0


def forget_bias(rnn: nn.Module, task) -> None:
    """The keep gate's bias +1 (Jozefowicz, Zaremba & Sutskever, "An Empirical Exploration of
    Recurrent Network Architectures", ICML 2015): the LSTM's forget gate f, the GRU's update
    gate z (h' = (1 - z) * n + z * h), sigma(1) = 0.73 at the start, so that the state is kept
    rather than forgotten while the weights are still random. Every other parameter stays."""
    set_bias(rnn, gate(rnn, KEEP_GATE), 1.0)


def chrono(rnn: nn.Module, task) -> None:
    """Chrono initialisation (Tallec & Ollivier, "Can recurrent neural networks warp time?",
    ICLR 2018): with T_max = task.horizon(), the longest sequence the task gives,

        b_f ~ log(U(1, T_max - 1)),    b_i = -b_f        (LSTM)

    one draw per unit, so that the units' characteristic forgetting times 1 + U(1, T_max - 1)
    spread over the task's whole range of time dependencies, and a unit that keeps long lets
    little in. For the GRU the update gate z is the keep gate and its input gate is 1 - z, tied
    to it (the paper's leaky RNN h' = (1 - a) h + a tanh(...)): b_z ~ log(U(1, T_max - 1)) is
    both halves of the rule at once. The GRU's reset gate r and candidate n keep their
    initialisation: r scales the recurrent input to the candidate, it sets no time scale, and
    leaving it keeps the comparison with the default on the time scales alone.
    With T_max <= 2 the range is empty and every b_f is log 1 = 0."""
    horizon = task.horizon()
    bias = rnn.bias_ih_l0
    keep = torch.empty(rnn.hidden_size, dtype=bias.dtype).uniform_(1.0, max(horizon - 1.0, 1.0)).log_()
    set_bias(rnn, gate(rnn, KEEP_GATE), keep.to(bias.device))
    if isinstance(rnn, nn.LSTM):
        set_bias(rnn, gate(rnn, INPUT_GATE), -keep.to(bias.device))


def recurrent_blocks(rnn: nn.Module) -> tuple[torch.Tensor, list[slice]]:
    """The recurrent matrix of an Elman-type layer and its diagonal blocks: the tanh RNN's
    whole W_hh (one block), a CW-RNN's module by module (each module's own recurrence)."""
    from models.clockwork import ClockworkRNN

    if isinstance(rnn, ClockworkRNN):
        starts = [sum(rnn.module_sizes[:i]) for i in range(len(rnn.module_sizes) + 1)]
        return rnn.weight_hh, [slice(a, b) for a, b in zip(starts, starts[1:])]
    if isinstance(rnn, nn.RNN):
        return rnn.weight_hh_l0, [slice(0, rnn.hidden_size)]
    raise TypeError(f"a recurrent-matrix initialisation needs a tanh RNN or a CW-RNN, not {type(rnn).__name__}")


@torch.no_grad()
def keep_mask(rnn: nn.Module) -> None:
    """A CW-RNN's absent blocks stay zero (they are anyway: only its own blocks are written)."""
    mask = getattr(rnn, "mask", None)
    if mask is not None and mask.device.type != "meta":
        rnn.weight_hh.mul_(mask)


@torch.no_grad()
def orthogonal(rnn: nn.Module, task) -> None:
    """The recurrent matrix orthogonal (Saxe, McClelland & Ganguli 2014; torch.nn.init.orthogonal_:
    Q of the QR decomposition of a Gaussian matrix, signs fixed by R's diagonal), so that at the
    start the recurrence neither shrinks nor grows the state (W W^T = I). A CW-RNN: each
    module's own block (the diagonal block W_H,ii) orthogonal, drawn in module order; the blocks
    by which slower modules feed faster ones keep their initialisation, and the absent ones stay
    zero, so the connection pattern holds. Biases and input weights stay."""
    weight, blocks = recurrent_blocks(rnn)
    for rows in blocks:
        size = rows.stop - rows.start
        block = torch.empty(size, size, dtype=weight.dtype)
        nn.init.orthogonal_(block)
        weight[rows, rows] = block.to(weight.device)
    keep_mask(rnn)


@torch.no_grad()
def identity(rnn: nn.Module, task) -> None:
    """IRNN (Le, Jaitly & Hinton, "A Simple Way to Initialize Recurrent Networks of Rectified
    Linear Units", 2015): recurrent matrix W_hh = I and the biases 0, so that at the start the
    state is copied from step to step (h' = f(h + W_ih x)) and gradients pass through time
    unchanged. Here f is tanh, as the RNN's: near 0 it is the identity too. The tanh RNN's two
    bias vectors (b_ih, b_hh) are both 0.

    A CW-RNN: W_H = I as a whole, i.e. each module's own block the identity and the blocks by
    which slower modules feed faster ones 0. That is IRNN's matrix itself (its off-diagonal
    entries are 0, and the mask keeps the diagonal), and it is the only choice under which every
    module starts by copying its own state: with the off-diagonal blocks left random, W_H = I + N
    (N strictly block-triangular) mixes slower modules into faster ones from the first step and
    its powers grow with t. Those blocks still learn: their gradient is the faster module's
    error times the slower module's state, not 0. Input weights stay."""
    weight, _ = recurrent_blocks(rnn)
    weight.copy_(torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device))
    keep_mask(rnn)
    for name in ("bias", "bias_ih_l0", "bias_hh_l0"):
        bias = getattr(rnn, name, None)
        if isinstance(bias, torch.Tensor):
            bias.zero_()


class InitialState(nn.Module):
    """A learnable initial state (`--train learn_h0=true`): one vector of n per part of the state
    the architecture's forward takes as `h0` (models/architectures.py, `state`: h, or the
    LSTM's h and c), initialised to zeros (so a run starts where one without it starts),
    expanded over the batch and passed as `h0`. A part forward ignores (IGNORED) is passed as
    zeros, and is no parameter. Its parameters are trained and counted like any other.

    Why: on a task whose input is all zeros (audio generation) every run otherwise starts from
    the same fixed point h(-1) = 0, and a layer whose state stays near it learns nothing."""

    def __init__(self, state: tuple[str, ...], hidden_size: int):
        super().__init__()
        self.state, self.hidden_size = tuple(state), hidden_size
        learned = [part for part in self.state if part != IGNORED]
        if not learned:
            raise ValueError(f"a state of parts {self.state} has nothing to learn")
        for part in learned:
            self.register_parameter(f"{part}0", nn.Parameter(torch.zeros(hidden_size)))

    @classmethod
    def of(cls, arch: str, hidden_size: int) -> InitialState:
        return cls(ARCHITECTURES[arch].state, hidden_size)

    def forward(self, batch: int):
        """h0 (1, batch, n), or a tuple of them (one per part), as the layer's forward takes it."""
        learned = next(self.parameters())
        # contiguous: cuDNN refuses an expanded hx
        parts = tuple((getattr(self, f"{part}0") if part != IGNORED else learned.new_zeros(self.hidden_size))
                      .expand(1, batch, self.hidden_size).contiguous() for part in self.state)
        return parts[0] if len(parts) == 1 else parts

    def extra_repr(self) -> str:
        return f"state={self.state}, hidden_size={self.hidden_size}"


__all__ = ["INITIALISATIONS", "InitialState", "chrono", "default", "forget_bias", "identity", "initialise_family",
           "orthogonal"]
