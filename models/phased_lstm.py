"""Phased LSTM (Neil, Pfeiffer & Liu, "Phased LSTM: Accelerating Recurrent Network Training
for Long or Event-based Sequences", NIPS 2016): an LSTM whose units update only while their
own time gate is open, the CW-RNN's clock made continuous and learnable.

Each unit j has a period tau_j, a phase shift s_j and an open ratio r_on; at time t

    phi_t = ((t - s) mod tau) / tau
    k_t   = 2 phi_t / r_on          if phi_t < r_on / 2        (opening)
            2 - 2 phi_t / r_on      if r_on / 2 <= phi_t < r_on  (closing)
            alpha phi_t             otherwise                 (closed: a small leak)

and with the LSTM's gates (torch.nn.LSTM's order i, f, g, o; W = weight_ih, U = weight_hh)

    i, f, g, o = sigma(.), sigma(.), tanh(.), sigma(.) of W x_t + U h_{t-1} + b
    c~_t = f * c_{t-1} + i * g          h~_t = o * tanh(c~_t)
    c_t  = k_t * c~_t + (1 - k_t) * c_{t-1}
    h_t  = k_t * h~_t + (1 - k_t) * h_{t-1}

Choices, each the paper's or its authors' code's (dannyneil/pytorch_plstm, plstm_cell.py):
- Time is the integer step t = 0 .. T-1 of each call (the benchmark's tasks are sampled on a
  regular grid); a call given h0 starts again at t = 0.
- The leak alpha is 1e-3 in training and 0 in evaluation (module.training), as in the paper.
  The authors' PyTorch code leaks always.
- tau and s are per unit; r_on is one learned scalar shared by the layer (the paper lets it be
  shared or per unit). Shared, because a unit whose gate stays closed for a whole sequence gets
  no gradient for its own r_on (k = alpha phi does not depend on it), so a per-unit r_on could
  not learn for such units.
- tau and r_on enter as |tau| and |r_on| (the authors' code does the same), so an optimiser step
  past zero cannot make a period negative.
- Initialisation: tau ~ exp(U(log 1, log 1000)), s ~ U(0, tau), r_on = 0.05; the LSTM's
  weights and bias as torch.nn.LSTM's, U(-1/sqrt(n), 1/sqrt(n)). The authors' PyTorch code
  draws tau ~ exp(U(1, 3)) and s ~ U(0, 100), tuned to its own frequency task.
- No peephole connections: the paper's LSTM equations carry them (w_ci, w_cf, w_co), the authors'
  PyTorch and TensorFlow code and the benchmark's LSTM row (torch.nn.LSTM) do not; leaving them
  out keeps the time gate the only difference from the LSTM row. One bias vector per gate
  (torch.nn.LSTM has two, which is the same function with 4n more parameters).

Parameters: 4n(i + n + 1) for the LSTM, 2n for tau and s, 1 for r_on.

Two implementations of the same function: "torch", the steps as a loop of torch ops
(autograd through each), and "compiled", the loop and its hand-written BPTT compiled with
numba (models/_numba_plstm.py; CPU, float32/float64). Both take the input projection
x W^T + b of every step and the time gate k (T, n) from torch (k depends on t and the
period, shift and open ratio only, so its gradient to them goes back through torch, and the
leak alpha is the module's in both); the compiled loop does the rest. "auto" runs the
compiled one on CPU up to batch x hidden = COMPILED_UP_TO, where torch's per-step op
overhead is most of the time (docs/performance.md has the measurements), torch elsewhere.
"""

import math

import torch
from torch import nn

from models.backends import numpy, resolve_kernel, run_kernels

LEAK = 1e-3  # alpha while training
PERIODS = (1.0, 1000.0)  # tau ~ exp(U(log min, log max))
OPEN_RATIO = 0.05
COMPILED_UP_TO = 32768  # auto: compiled while batch x hidden is at most this (the largest measured: B=128 n=256)
KERNELS = "models._numba_plstm"


def time_gate(t: torch.Tensor, period: torch.Tensor, shift: torch.Tensor, open_ratio: torch.Tensor,
              leak: float) -> torch.Tensor:
    """k (T, n) for the times t (T,): the openness of each unit's gate at each time."""
    period, open_ratio = period.abs(), open_ratio.abs()
    phi = torch.remainder(t[:, None] - shift, period) / period  # remainder: >= 0 for a positive period
    opening, closing = 2 * phi / open_ratio, 2 - 2 * phi / open_ratio
    return torch.where(phi < open_ratio / 2, opening, torch.where(phi < open_ratio, closing, leak * phi))


class PhasedLSTM(nn.Module):
    """One Phased LSTM layer with torch.nn.LSTM's calling convention (batch_first): forward(x,
    (h0, c0) or None) -> outputs (B, T, n), (h_T, c_T) each (1, B, n)."""

    # not weights: a paper-style re-initialisation of the weights (models.registry.initialise)
    # leaves them as the paper initialises them
    own_initialisation = ("period", "shift", "open_ratio")

    implementations = ("torch", "compiled")

    def __init__(self, input_size: int, hidden_size: int, backend: str = "auto"):
        super().__init__()
        self.hidden_size = hidden_size
        self.backend = backend
        # named weight_ih so that freeze_input_weights finds it
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.period = nn.Parameter(torch.empty(hidden_size))
        self.shift = nn.Parameter(torch.empty(hidden_size))
        self.open_ratio = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in (self.weight_ih, self.weight_hh, self.bias):
                nn.init.uniform_(p, -bound, bound)
            low, high = (math.log(p) for p in PERIODS)
            self.period.copy_(torch.empty_like(self.period).uniform_(low, high).exp())
            self.shift.copy_(torch.rand_like(self.shift) * self.period)
            self.open_ratio.fill_(OPEN_RATIO)

    def resolved_backend(self, x: torch.Tensor, h0: tuple[torch.Tensor, torch.Tensor] | None = None) -> str:
        """The implementation that runs on x: the one asked for, or for "auto" the compiled one
        on CPU while batch x hidden <= COMPILED_UP_TO."""
        return resolve_kernel("phased_lstm", self.backend, x, (self.weight_ih, self.weight_hh, *(h0 or ())),
                              lambda x: x.shape[0] * self.hidden_size <= COMPILED_UP_TO)

    def forward(self, x: torch.Tensor, h0: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x (B, T, I), (h0, c0) each (1, B, n) or None -> outputs (B, T, n), (h_T, c_T)."""
        batch, steps, _ = x.shape
        if h0 is None:
            h = c = x.new_zeros(batch, self.hidden_size)
        else:
            h, c = h0[0][0], h0[1][0]
        t = torch.arange(steps, dtype=x.dtype, device=x.device)
        k = time_gate(t, self.period, self.shift, self.open_ratio, LEAK if self.training else 0.0)
        xw = nn.functional.linear(x, self.weight_ih, self.bias)  # every step's input term at once
        if self.resolved_backend(x, h0) == "compiled":
            outputs, h_last, c_last = CompiledPhasedLSTM.apply(xw, h, c, k, self.weight_hh)
            return outputs, (h_last.unsqueeze(0), c_last.unsqueeze(0))
        outputs = []
        for step in range(steps):
            i, f, g, o = (xw[:, step] + h @ self.weight_hh.T).chunk(4, dim=1)
            c_tilde = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_tilde = torch.sigmoid(o) * torch.tanh(c_tilde)
            k_t = k[step]
            c = k_t * c_tilde + (1 - k_t) * c
            h = k_t * h_tilde + (1 - k_t) * h
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h.unsqueeze(0), c.unsqueeze(0))


class CompiledPhasedLSTM(torch.autograd.Function):
    """The steps on xw = x W^T + b and the time gate k (T, n): forward and BPTT by the loops of
    models/_numba_plstm.py, batch rows on numba's threads."""

    @staticmethod
    def forward(ctx, xw, h0, c0, k, weight_hh):
        batch, steps, _ = xw.shape
        n = weight_hh.shape[1]
        outputs, cells = xw.new_empty(batch, steps, n), xw.new_empty(batch, steps, n)
        gates = xw.new_empty(batch, steps, 6 * n)  # i, f, g, o, c~, tanh(c~) of every step, for the backward
        args = (numpy(xw), numpy(h0), numpy(c0), numpy(k), numpy(weight_hh.T), outputs.numpy(), cells.numpy(),
                gates.numpy())
        run_kernels(KERNELS, "forward", batch, *args)
        ctx.save_for_backward(outputs, cells, gates, h0, c0, k, weight_hh)
        # clones: views would tie the outputs together
        return outputs, outputs[:, -1].clone(), cells[:, -1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_outputs, grad_h_last, grad_c_last):
        from models._numba_kernels import CHUNKS, ROWS

        outputs, cells, gates, h0, c0, k, weight_hh = ctx.saved_tensors
        batch, steps, n = outputs.shape
        grad_outputs = torch.zeros_like(outputs) if grad_outputs is None else grad_outputs
        grad_h_last = torch.zeros_like(h0) if grad_h_last is None else grad_h_last
        grad_c_last = torch.zeros_like(c0) if grad_c_last is None else grad_c_last
        grad_xw, grad_h0, grad_c0 = outputs.new_empty(batch, steps, 4 * n), torch.empty_like(h0), torch.empty_like(c0)
        chunks = min(-(-batch // ROWS), CHUNKS)  # blocks of ROWS rows, at most CHUNKS
        grad_w, grad_k = outputs.new_zeros(chunks, 4 * n, n), outputs.new_zeros(chunks, steps, n)
        args = (numpy(grad_outputs), numpy(grad_h_last), numpy(grad_c_last), outputs.numpy(), cells.numpy(),
                gates.numpy(), numpy(h0), numpy(c0), numpy(k), numpy(weight_hh), grad_xw.numpy(), grad_h0.numpy(),
                grad_c0.numpy(), grad_w.numpy(), grad_k.numpy())
        run_kernels(KERNELS, "backward", batch, *args)
        for c in range(1, chunks):  # in a fixed order: the sums do not depend on the threads
            grad_w[0] += grad_w[c]
            grad_k[0] += grad_k[c]
        return grad_xw, grad_h0, grad_c0, grad_k[0], grad_w[0]


def build(spec, input_size: int, backend: str = "auto") -> PhasedLSTM:
    return PhasedLSTM(input_size, spec.hidden_size, backend)
