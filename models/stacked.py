"""Many independent networks of one shape as one computation: each parameter of N built
`SequenceModel`s (models/lightning.py) stacked along a leading member dimension, and the
forward of all N at once with batched matrix products (bmm), in plain torch.

Why: at batch 1 on a CPU a small recurrent run spends its time on per-op dispatch, not on
arithmetic (results/speed/overhead_cpu.md); N runs that differ only in their seed and data
can share every op. Member k's numbers depend only on member k's weights and data: every
op below is either elementwise or a per-member matrix product, so member k gets the same
function as its own model to float rounding (not bitwise: bmm and the library kernels sum
in other orders).

Covered: the layers built for rnn, lstm, gru (torch's nn.RNN/nn.LSTM/nn.GRU equations),
cwrnn (every schedule and wiring: the reference recurrence with the layer's own mask and
firing schedule), indrnn (its recurrent-weight constraint applied to the stacked parameter
as the module applies it to its own), mingru (the sequential form of its recurrence, the
function its compiled, sequential and scan implementations compute; "compiled" runs its own
kernel with the members as rows), lru (its complex
diagonal recurrence, sequential, as complex tensors) and phased_lstm (its time gate by its own
function, leaking while `training` as the module does), with a learnable initial state or
without. Other architectures (`STACKED_ARCHS` does not name them) train one run at a time.

Two implementations of the matrix recurrences (rnn, lstm, gru, cwrnn): "torch" (the loops
below: per step a bmm and the gates, autograd's backward) and "compiled"
(models/_numba_stacked.py: the same equations and a hand-written BPTT as numba loops, each
member with its own weights; the single-run kernels of models/_numba_*.py share one weight
matrix over the batch and cannot stack). "compiled" runs where numba is installed, on CPU in
float32/float64; tests hold it to the torch loops to rounding. The newer cells (`TORCH_ONLY`:
indrnn, mingru, lru, phased_lstm) have torch loops here; where "compiled" runs, indrnn,
phased_lstm and mingru run the run alone's own numba kernel instead (indrnn's and phased_lstm's
share their weights over the rows: one call per member; mingru's holds no weights: the members
as rows of one call), which at batch 1 costs less than the torch loop's per-step ops.
"""

from __future__ import annotations

import torch
from torch import nn

from models.backends import numpy as _np
from models.clockwork import ClockworkRNN
from models.indrnn import MAGNITUDE, CompiledIndRNN, IndRNN
from models.lru import LRU
from models.mingru import CompiledMinGRU, MinGRU, g
from models.phased_lstm import LEAK, CompiledPhasedLSTM, PhasedLSTM, time_gate

STACKED_ARCHS = ("rnn", "lstm", "gru", "cwrnn", "indrnn", "mingru", "lru", "phased_lstm")
# the newer cells: torch loops here, or the single-run kernels (no models/_numba_stacked.py form)
TORCH_ONLY = ("indrnn", "mingru", "lru", "phased_lstm")
# the parts of the initial state each forward takes (models/architectures.py `state`, less the
# LRU's ignored y_0): learned as initial_state.<part>0, or zeros
STATE_PARTS = {"lstm": ("h", "c"), "lru": ("re", "im"), "phased_lstm": ("h", "c")}


def layer_kind(rnn: nn.Module) -> str:
    """Which stacked forward runs this layer; "" for one it has none for."""
    if isinstance(rnn, ClockworkRNN):
        return "cwrnn"
    if isinstance(rnn, IndRNN):
        return "indrnn"
    if isinstance(rnn, MinGRU):
        return "mingru"
    if isinstance(rnn, LRU):
        return "lru"
    if isinstance(rnn, PhasedLSTM):
        return "phased_lstm"
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

    def __init__(self, models: list[nn.Module], implementation: str = "auto"):
        first = models[0]
        self.kind = layer_kind(first.rnn)
        if not self.kind:
            raise ValueError(f"no stacked forward for {type(first.rnn).__name__}")
        self.size = len(models)
        self.hidden = first.rnn.hidden_size
        self.state_parts = tuple(first.initial_state.state) if first.initial_state is not None else ()
        self.implementation = implementation
        # as nn.Module.training: the Phased LSTM's time gate leaks while training, not in evaluation
        self.training = True
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
        n, parts = self.hidden, STATE_PARTS.get(self.kind, ("h",))
        if not self.state_parts:
            zeros = torch.zeros(self.size, batch, n, dtype=dtype)
            return tuple(zeros for _ in parts)
        return tuple(self.params[f"initial_state.{part}0"].unsqueeze(1).expand(self.size, batch, n).contiguous()
                     for part in parts)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, B, T, I) -> outputs (N, B, T, O) of every member's readout."""
        p = self.params
        size, batch, steps, _ = x.shape
        dtype = p["readout.weight"].dtype
        h0 = self._h0(batch, dtype)
        if self.kind in TORCH_ONLY:
            return self._readout(self._torch_only(x, h0))
        compiled = resolve(self.implementation, x) == "compiled"
        if self.kind == "cwrnn":
            xw = project(x, p["rnn.weight_ih"], p["rnn.bias"])
            weight, fires = p["rnn.weight_hh"] * self.mask, self.cw.firing_schedule(steps)
        else:
            bias = p["rnn.bias_ih_l0"]
            if self.kind in ("rnn", "lstm"):
                bias = bias + p["rnn.bias_hh_l0"]
            xw = project(x, p["rnn.weight_ih_l0"], bias)
            weight = p["rnn.weight_hh_l0"]
            fires = torch.ones(steps, self.hidden, dtype=torch.bool)  # an Elman RNN: every unit at every step
        if compiled:
            if self.kind in ("rnn", "cwrnn"):
                outputs = CompiledElman.apply(xw, h0[0], weight, fires)
            elif self.kind == "lstm":
                outputs = CompiledLSTM.apply(xw, h0[0], h0[1], weight)
            else:
                outputs = CompiledGRU.apply(xw, h0[0], weight, p["rnn.bias_hh_l0"])
        elif self.kind == "cwrnn":
            outputs = cwrnn(xw, h0[0], weight.transpose(1, 2), fires)
        elif self.kind == "rnn":
            outputs = elman(xw, h0[0], weight.transpose(1, 2))
        elif self.kind == "lstm":
            outputs = lstm(xw, h0[0], h0[1], weight.transpose(1, 2))
        else:
            outputs = gru(xw, h0[0], weight.transpose(1, 2), p["rnn.bias_hh_l0"].unsqueeze(1))
        return self._readout(outputs)

    def _readout(self, outputs: torch.Tensor) -> torch.Tensor:
        """The layer's outputs (N, B, T, n) -> every member's readout (N, B, T, O)."""
        p = self.params
        size, batch, steps, _ = outputs.shape
        flat = outputs.reshape(size, batch * steps, self.hidden)
        y = torch.baddbmm(p["readout.bias"].unsqueeze(1), flat, p["readout.weight"].transpose(1, 2))
        return y.view(size, batch, steps, -1)

    def _torch_only(self, x: torch.Tensor, h0: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The layers stacked as torch loops only: x (N, B, T, I) -> (N, B, T, n)."""
        p = self.params
        if self.kind == "indrnn":
            u = p["rnn.weight_hh"]
            # models/indrnn.py IndRNN.constrain, on the parameter itself before every forward (training
            # and evaluation), T the input's length; clamping a member within the bound leaves it as it is
            bound = MAGNITUDE ** (1 / max(x.shape[2], 1))
            if bool((u.abs() > bound).any()):
                with torch.no_grad():
                    u.clamp_(-bound, bound)
            xw = project(x, p["rnn.weight_ih"], p["rnn.bias"])
            if resolve(self.implementation, x) == "compiled":
                # the run alone's kernel shares u over its rows: one call per member (a loop over
                # members, not steps: the torch loop's per-step ops cost more at batch 1)
                # unbind, not [k]: the backward of N selects writes N tensors of the whole size
                return torch.stack([CompiledIndRNN.apply(*member)[0] for member in zip(xw.unbind(0), h0[0].unbind(0),
                                                                                      u.unbind(0))])
            return indrnn(xw, h0[0], u.unsqueeze(1))
        if self.kind == "mingru":
            # models/mingru.py in the form of its compiled loop (what "auto" runs on CPU): h = a h + b
            # with a = 1 - z, b = z g(a_h); its sequential and scan forms are the same function
            a_h, a_z = project(x, p["rnn.weight_ih"], p["rnn.bias"]).chunk(2, dim=-1)
            z = torch.sigmoid(a_z)
            a, b = 1 - z, z * g(a_h)
            if resolve(self.implementation, x) == "compiled":
                # the run alone's own kernel: it holds no parameter, every row (here member x batch)
                # its own a and b, so the members stack as rows
                size, batch, steps, n = a.shape
                out = CompiledMinGRU.apply(a.reshape(size * batch, steps, n), b.reshape(size * batch, steps, n),
                                           h0[0].reshape(size * batch, n))
                return out.view(size, batch, steps, n)
            return linear_recurrence(a, b, h0[0])
        if self.kind == "lru":
            # models/lru.py: x_t = lambda x_{t-1} + gamma (B u_t), y_t = Re(C x_t) + D u_t, the sequential
            # form of what its scan computes; lambda = exp(-exp(nu) + i exp(theta)), gamma = exp(gamma_log)
            gamma = torch.exp(p["rnn.gamma_log"]).unsqueeze(2)
            b = torch.complex(project(x, p["rnn.weight_ih_re"] * gamma), project(x, p["rnn.weight_ih_im"] * gamma))
            lam = torch.exp(torch.complex(-torch.exp(p["rnn.nu_log"]), torch.exp(p["rnn.theta_log"])))
            states = lru(lam.unsqueeze(1), b, torch.complex(h0[0], h0[1]))
            return (project(states.real, p["rnn.weight_out_re"]) - project(states.imag, p["rnn.weight_out_im"])
                    + project(x, p["rnn.weight_ih_skip"]))
        if self.kind == "phased_lstm":
            # models/phased_lstm.py: its time gate k (N, T, n) by its own function, broadcast over members
            t = torch.arange(x.shape[2], dtype=x.dtype)
            k = time_gate(t, p["rnn.period"].unsqueeze(1), p["rnn.shift"].unsqueeze(1),
                          p["rnn.open_ratio"].view(-1, 1, 1), LEAK if self.training else 0.0)
            xw = project(x, p["rnn.weight_ih"], p["rnn.bias"])
            if resolve(self.implementation, x) == "compiled":  # the run alone's kernel, one call per member
                members = zip(xw.unbind(0), h0[0].unbind(0), h0[1].unbind(0), k.unbind(0), p["rnn.weight_hh"].unbind(0))
                return torch.stack([CompiledPhasedLSTM.apply(*member)[0] for member in members])
            return phased_lstm(xw, h0[0], h0[1], k, p["rnn.weight_hh"].transpose(1, 2))
        raise ValueError(f"no stacked forward for {self.kind}")


def project(x, weight, bias=None):
    """x (N, B, T, I) @ W^T (+ b) for every member: (N, B, T, n)."""
    size, batch, steps, inputs = x.shape
    flat = x.reshape(size, batch * steps, inputs)
    if bias is None:
        out = torch.bmm(flat, weight.transpose(1, 2))
    else:
        out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
    return out.view(size, batch, steps, -1)


# The recurrences: xw (N, B, T, n·gates), h (N, B, n), weights transposed (N, n, n·gates);
# unbind, not xw[:, :, t]: the backward of T selects writes T full-size tensors; stack's is one.

def unrolled(step, h, *sequences):
    """h_t = step(h_{t-1}, sequences[0][:, :, t], ...) for every t: (N, B, T, n)."""
    outputs = []
    for inputs in zip(*(sequence.unbind(2) for sequence in sequences)):
        h = step(h, *inputs)
        outputs.append(h)
    return torch.stack(outputs, 2)


def elman(xw, h, weight_t):
    return unrolled(lambda h, xw_t: torch.tanh(torch.baddbmm(xw_t, h, weight_t)), h, xw)


def indrnn(xw, h, u):
    """models/indrnn.py: h = relu(xw + u * h), u (N, 1, n) (xw holds the bias)."""
    return unrolled(lambda h, xw_t: torch.relu(torch.addcmul(xw_t, u, h)), h, xw)


def linear_recurrence(a, b, h):
    """h = a * h + b elementwise (minGRU): a, b (N, B, T, n)."""
    return unrolled(lambda h, a_t, b_t: torch.addcmul(b_t, a_t, h), h, a, b)


def lru(lam, b, state):
    """x = lambda * x + b, complex: lambda (N, 1, n), b (N, B, T, n), state (N, B, n)."""
    return unrolled(lambda state, b_t: lam * state + b_t, state, b)


def phased_lstm(xw, h, c, k, weight_t):
    """models/phased_lstm.py: the LSTM's c~, h~ (gates i, f, g, o of xw + h U^T; xw holds the
    bias), then c = k c~ + (1 - k) c, h = k h~ + (1 - k) h with the time gate k (N, T, n)."""
    outputs = []
    for xw_t, k_t in zip(xw.unbind(2), k.unbind(1)):
        i, f, g_, o = torch.baddbmm(xw_t, h, weight_t).chunk(4, dim=-1)
        c_tilde = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g_)
        h_tilde = torch.sigmoid(o) * torch.tanh(c_tilde)
        k_t = k_t.unsqueeze(1)
        c = k_t * c_tilde + (1 - k_t) * c
        h = k_t * h_tilde + (1 - k_t) * h
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


def resolve(implementation: str, x: torch.Tensor) -> str:
    """"auto": compiled where it runs (numba installed; CPU; float32/float64), else torch."""
    from models.backends import numba_available

    runs = numba_available() and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    if implementation == "compiled" and not runs:
        raise ValueError("the compiled stacked recurrences need numba, the CPU and float32/float64")
    if implementation == "auto":
        return "compiled" if runs else "torch"
    return implementation


def _kernels():
    import importlib

    return importlib.import_module("models._numba_stacked")




class CompiledElman(torch.autograd.Function):
    """tanh RNN / CW-RNN: xw (M, B, T, n), h0 (M, B, n), weight (M, n, n) with the structural
    zeros applied, fires (T, n) -> outputs (M, B, T, n)."""

    @staticmethod
    def forward(ctx, xw, h0, weight, fires):
        out = xw.new_empty(xw.shape)
        fires = fires.contiguous().numpy()
        _kernels().elman_forward(_np(xw), _np(h0), _np(weight), fires, out.numpy())
        ctx.save_for_backward(h0, weight, out)
        ctx.fires = fires
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        h0, weight, out = ctx.saved_tensors
        grad_xw, grad_h0, grad_w = torch.empty_like(out), torch.empty_like(h0), torch.zeros_like(weight)
        _kernels().elman_backward(_np(grad_out), _np(h0), _np(weight), ctx.fires, _np(out), grad_xw.numpy(),
                                  grad_h0.numpy(), grad_w.numpy())
        return grad_xw, grad_h0, grad_w, None


class CompiledLSTM(torch.autograd.Function):
    """xw (M, B, T, 4n) with both biases, h0 and c0 (M, B, n), weight (M, 4n, n) -> outputs."""

    @staticmethod
    def forward(ctx, xw, h0, c0, weight):
        members, batch, steps, _ = xw.shape
        n = h0.shape[-1]
        out, cells = xw.new_empty(members, batch, steps, n), xw.new_empty(members, batch, steps, n)
        gates = xw.new_empty(xw.shape)
        _kernels().lstm_forward(_np(xw), _np(h0), _np(c0), _np(weight), out.numpy(), cells.numpy(), gates.numpy())
        ctx.save_for_backward(h0, c0, weight, out, cells, gates)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        h0, c0, weight, out, cells, gates = ctx.saved_tensors
        grad_xw, grad_w = torch.empty_like(gates), torch.zeros_like(weight)
        grad_h0, grad_c0 = torch.empty_like(h0), torch.empty_like(c0)
        _kernels().lstm_backward(_np(grad_out), _np(h0), _np(c0), _np(weight), _np(out), _np(cells), _np(gates),
                                 grad_xw.numpy(), grad_h0.numpy(), grad_c0.numpy(), grad_w.numpy())
        return grad_xw, grad_h0, grad_c0, grad_w


class CompiledGRU(torch.autograd.Function):
    """xw (M, B, T, 3n) with b_ih, h0 (M, B, n), weight (M, 3n, n), b_hh (M, 3n) -> outputs."""

    @staticmethod
    def forward(ctx, xw, h0, weight, b_hh):
        members, batch, steps, _ = xw.shape
        n = h0.shape[-1]
        out, gates = xw.new_empty(members, batch, steps, n), xw.new_empty(members, batch, steps, 4 * n)
        _kernels().gru_forward(_np(xw), _np(h0), _np(weight), _np(b_hh), out.numpy(), gates.numpy())
        ctx.save_for_backward(h0, weight, b_hh, out, gates)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        h0, weight, b_hh, out, gates = ctx.saved_tensors
        members, batch, steps, n = out.shape
        grad_xw = out.new_empty(members, batch, steps, 3 * n)
        grad_h0, grad_w, grad_b = torch.empty_like(h0), torch.zeros_like(weight), torch.zeros_like(b_hh)
        _kernels().gru_backward(_np(grad_out), _np(h0), _np(weight), _np(out), _np(gates), grad_xw.numpy(),
                                grad_h0.numpy(), grad_w.numpy(), grad_b.numpy())
        return grad_xw, grad_h0, grad_w, grad_b
