"""IndRNN (Li, Li, Cook, Zhu & Gao, CVPR 2018): h_t = relu(W x_t + u * h_{t-1} + b), u a vector,
so each unit reads only its own past. The worked example of adding an architecture: this
module plus one line in models/architectures.py.

The paper's recurrent-weight constraint: through T steps a unit's gradient is scaled by
u^(T-t) (where it is active), so |u| <= MAGNITUDE^(1/T) keeps it from growing beyond
MAGNITUDE (the authors' code: U_bound = MAG^(1/seq_len), MAG "2 or 10"). The authors clamp the
parameter in place (clip_weight) before each forward pass of their training loop; this module
does the same at the start of forward, with T the length of the input, and only when some |u|
exceeds the bound (so an unconstrained u is never written to). The recurrence then uses the
parameter itself, which gets its gradient as usual; a unit pushed past the bound comes back
to it on the next call.

Two implementations of the same function: "torch", the recurrence as a loop of torch ops
over the steps (autograd through each), and "compiled", the loop and its hand-written BPTT
compiled with numba (models/_numba_indrnn.py; CPU, float32/float64), on the input
projection x W^T + b from torch. At the suite's sizes the torch loop is all per-op overhead
(audio, n = 333: 20 ms a forward+backward, 0.9 ms compiled; the LSTM at the same budget 2.2 ms:
docs/performance.md). "auto" runs the compiled one wherever it can (numba installed, CPU,
float32/float64), torch elsewhere; either way the constraint above is applied first, to the
parameter itself.
"""

import math

import torch
from torch import nn

from models.backends import numpy, resolve_kernel, run_kernels

MAGNITUDE = 2.0  # the largest factor a gradient may grow by over the sequence


class IndRNN(nn.Module):
    """One IndRNN layer with torch.nn.RNN's calling convention (batch_first)."""

    implementations = ("torch", "compiled")

    def __init__(self, input_size: int, hidden_size: int, backend: str = "auto"):
        super().__init__()
        self.hidden_size = hidden_size
        self.backend = backend
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))  # named so freeze_input_weights finds it
        self.weight_hh = nn.Parameter(torch.empty(hidden_size))  # u
        self.bias = nn.Parameter(torch.empty(hidden_size))
        for p in self.parameters():  # nn.RNN's initialisation
            nn.init.uniform_(p, -1 / math.sqrt(hidden_size), 1 / math.sqrt(hidden_size))

    def constrain(self, steps: int) -> None:
        """|u| <= MAGNITUDE^(1/steps), the paper's bound for sequences of `steps` steps."""
        bound = MAGNITUDE ** (1 / max(steps, 1))
        if bool((self.weight_hh.abs() > bound).any()):
            with torch.no_grad():
                self.weight_hh.clamp_(-bound, bound)

    def resolved_backend(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> str:
        """The implementation that runs on x: the one asked for, or for "auto" the compiled
        one wherever it can run (faster at every shape measured: docs/performance.md)."""
        return resolve_kernel("indrnn", self.backend, x, (self.weight_ih, self.weight_hh, h0), lambda x: True)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        """x (B, T, I), h0 (1, B, n) or None -> outputs (B, T, n), h_T (1, B, n)."""
        self.constrain(x.shape[1])
        h = x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0[0]
        if self.resolved_backend(x, h0) == "compiled":
            outputs, h_last = CompiledIndRNN.apply(nn.functional.linear(x, self.weight_ih, self.bias), h,
                                                   self.weight_hh)
            return outputs, h_last.unsqueeze(0)
        outputs = []
        for xw_t in nn.functional.linear(x, self.weight_ih, self.bias).unbind(1):
            h = torch.relu(xw_t + self.weight_hh * h)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h.unsqueeze(0)


KERNELS = "models._numba_indrnn"


class CompiledIndRNN(torch.autograd.Function):
    """h_t = relu(xw_t + u h_{t-1}) on xw = x W^T + b: forward and BPTT by the loops of
    models/_numba_indrnn.py (units in chunks on numba's threads)."""

    @staticmethod
    def forward(ctx, xw, h0, u):
        outputs = xw.new_empty(xw.shape[0], xw.shape[1], u.shape[0])
        args = numpy(xw), numpy(h0), numpy(u), outputs.numpy()
        run_kernels(KERNELS, "forward", xw.shape[0], *args)
        ctx.save_for_backward(outputs, h0, u)
        return outputs, outputs[:, -1].clone()  # a view would tie the two outputs together

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_outputs, grad_h_last):
        outputs, h0, u = ctx.saved_tensors
        grad_outputs = torch.zeros_like(outputs) if grad_outputs is None else grad_outputs
        grad_h_last = torch.zeros_like(h0) if grad_h_last is None else grad_h_last
        grad_xw, grad_h0, grad_u = torch.empty_like(outputs), torch.empty_like(h0), torch.zeros_like(u)
        args = (numpy(grad_outputs), numpy(grad_h_last), outputs.numpy(), numpy(h0), numpy(u), grad_xw.numpy(),
                grad_h0.numpy(), grad_u.numpy())
        run_kernels(KERNELS, "backward", outputs.shape[0], *args)
        return grad_xw, grad_h0, grad_u


def build(spec, input_size: int, backend: str = "auto") -> IndRNN:
    return IndRNN(input_size, spec.hidden_size, backend)
