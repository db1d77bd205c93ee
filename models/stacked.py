"""Many independent networks of one shape as one computation: each parameter of N built
`SequenceModel`s (models/lightning.py) stacked along a leading member dimension, and the
forward of all N at once with batched matrix products (bmm), in plain torch.

Why: at batch 1 on a CPU a small recurrent run spends its time on per-op dispatch, not on
arithmetic (results/speed/overhead_cpu.md); N runs that differ only in their seed and data
can share every op. Member k's numbers depend only on member k's weights and data: every
op below is either elementwise or a per-member matrix product, so member k gets the same
function as its own model to float rounding (not bitwise: bmm and the library kernels sum
in other orders).

Covered: the layers built for rnn, lstm, gru (torch's nn.RNN/nn.LSTM/nn.GRU equations) and
cwrnn (every schedule and wiring: the reference recurrence with the layer's own mask and
firing schedule), with a learnable initial state or without. Other architectures
(`STACKED_ARCHS` does not name them) train one run at a time. The compiled (numba) kernels
cannot take per-member weights, so nothing here uses them.
"""

from __future__ import annotations

import torch
from torch import nn

from models.clockwork import ClockworkRNN

STACKED_ARCHS = ("rnn", "lstm", "gru", "cwrnn")


def layer_kind(rnn: nn.Module) -> str:
    """Which stacked forward runs this layer; "" for one it has none for."""
    if isinstance(rnn, ClockworkRNN):
        return "cwrnn"
    if isinstance(rnn, (nn.RNN, nn.LSTM, nn.GRU)):
        plain = (rnn.num_layers == 1 and not rnn.bidirectional and rnn.batch_first and rnn.bias
                 and getattr(rnn, "proj_size", 0) == 0 and getattr(rnn, "nonlinearity", "tanh") == "tanh")
        if plain:
            return "lstm" if isinstance(rnn, nn.LSTM) else "gru" if isinstance(rnn, nn.GRU) else "rnn"
    return ""


class StackedModels:
    """The parameters of `models` (same architecture and shape) stacked: `params[name]` is
    (N, *shape) for every named parameter of one model, a leaf tensor that requires grad
    where the models' parameter does (frozen input weights stay frozen)."""

    def __init__(self, models: list[nn.Module]):
        first = models[0]
        self.kind = layer_kind(first.rnn)
        if not self.kind:
            raise ValueError(f"no stacked forward for {type(first.rnn).__name__}")
        self.size = len(models)
        self.hidden = first.rnn.hidden_size
        self.state_parts = tuple(first.initial_state.state) if first.initial_state is not None else ()
        self.params: dict[str, torch.Tensor] = {}
        for name, p in first.named_parameters():
            stacked = torch.stack([dict(m.named_parameters())[name].detach() for m in models]).clone()
            self.params[name] = stacked.requires_grad_(p.requires_grad)
        if self.kind == "cwrnn":
            self.mask = first.rnn.mask
            self.cw = first.rnn

    def trainable(self) -> list[torch.Tensor]:
        """In the order of the model's parameters(), as its optimizer takes them."""
        return [p for p in self.params.values()]

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's parameters, by the model's names (a copy)."""
        return {name: p[k].detach().clone() for name, p in self.params.items()}

    def _h0(self, batch: int, dtype) -> tuple[torch.Tensor, ...]:
        """(N, B, n) initial state of each part: the learned one, or zeros."""
        n, parts = self.hidden, ("h", "c") if self.kind == "lstm" else ("h",)
        if not self.state_parts:
            zeros = torch.zeros(self.size, batch, n, dtype=dtype)
            return tuple(zeros for _ in parts)
        return tuple(self.params[f"initial_state.{part}0"].unsqueeze(1).expand(self.size, batch, n).contiguous()
                     for part in parts)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, B, T, I) -> outputs (N, B, T, O) of every member's readout."""
        p = self.params
        size, batch, steps, _ = x.shape
        h0 = self._h0(batch, p["readout.weight"].dtype)
        if self.kind == "cwrnn":
            xw = project(x, p["rnn.weight_ih"], p["rnn.bias"])
            outputs = cwrnn(xw, h0[0], (p["rnn.weight_hh"] * self.mask).transpose(1, 2),
                            self.cw.firing_schedule(steps))
        else:
            bias = p["rnn.bias_ih_l0"]
            if self.kind in ("rnn", "lstm"):
                bias = bias + p["rnn.bias_hh_l0"]
            xw = project(x, p["rnn.weight_ih_l0"], bias)
            weight = p["rnn.weight_hh_l0"].transpose(1, 2)
            if self.kind == "rnn":
                outputs = elman(xw, h0[0], weight)
            elif self.kind == "lstm":
                outputs = lstm(xw, h0[0], h0[1], weight)
            else:
                outputs = gru(xw, h0[0], weight, p["rnn.bias_hh_l0"].unsqueeze(1))
        flat = outputs.reshape(size, batch * steps, self.hidden)
        y = torch.baddbmm(p["readout.bias"].unsqueeze(1), flat, p["readout.weight"].transpose(1, 2))
        return y.view(size, batch, steps, -1)


def project(x, weight, bias):
    """x (N, B, T, I) @ W^T + b for every member: (N, B, T, n)."""
    size, batch, steps, inputs = x.shape
    out = torch.baddbmm(bias.unsqueeze(1), x.reshape(size, batch * steps, inputs), weight.transpose(1, 2))
    return out.view(size, batch, steps, -1)


# The recurrences: xw (N, B, T, n·gates), h (N, B, n), weights transposed (N, n, n·gates);
# unbind, not xw[:, :, t]: the backward of T selects writes T full-size tensors; stack's is one.

def elman(xw, h, weight_t):
    outputs = []
    for xw_t in xw.unbind(2):
        h = torch.tanh(torch.baddbmm(xw_t, h, weight_t))
        outputs.append(h)
    return torch.stack(outputs, 2)


def cwrnn(xw, h, weight_t, fires):
    """models/clockwork_rules.py reference_recurrence: every module computed, silent ones keep h."""
    outputs = []
    for xw_t, fires_t in zip(xw.unbind(2), fires.unbind(0)):
        h = torch.where(fires_t, torch.tanh(torch.baddbmm(xw_t, h, weight_t)), h)
        outputs.append(h)
    return torch.stack(outputs, 2)


def lstm(xw, h, c, weight_t):
    """nn.LSTM: gates i, f, g, o = xw + h W_hh^T (xw holds both biases)."""
    n = h.shape[-1]
    outputs = []
    for xw_t in xw.unbind(2):
        gates = torch.baddbmm(xw_t, h, weight_t)
        s = torch.sigmoid(gates)
        c = torch.addcmul(s[..., n:2 * n] * c, s[..., :n], torch.tanh(gates[..., 2 * n:3 * n]))
        h = s[..., 3 * n:] * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, 2)


def gru(xw, h, weight_t, bias_hh):
    """nn.GRU: r, z = sigmoid(xw + h W_hh^T + b_hh) (first 2n), n = tanh(xw_n + r * (h W_hn^T + b_hn)),
    h' = (1 - z) * n + z * h (xw holds b_ih only)."""
    n = h.shape[-1]
    outputs = []
    for xw_t in xw.unbind(2):
        gh = torch.baddbmm(bias_hh, h, weight_t)
        rz = torch.sigmoid(xw_t[..., :2 * n] + gh[..., :2 * n])
        candidate = torch.tanh(torch.addcmul(xw_t[..., 2 * n:], rz[..., :n], gh[..., 2 * n:]))
        h = torch.lerp(candidate, h, rz[..., n:])
        outputs.append(h)
    return torch.stack(outputs, 2)
