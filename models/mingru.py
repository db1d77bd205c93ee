"""minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs All We Needed?", 2024),
the log-space version of its appendix B.3: a GRU whose gate and candidate read only the
input, so the recurrence is linear in h and runs as a parallel scan.

    z_t  = sigma(W_z x_t + b_z)
    h~_t = g(W_h x_t + b_h),   g(a) = a + 1/2 for a >= 0, sigma(a) otherwise  (h~ > 0)
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

Three implementations of the same function:
- "sequential": the recurrence above, one step at a time;
- "scan": the paper's log-space parallel scan (Heinsen 2023): with a*_t = sum_{k<=t} log(1 - z_k),
  h_t = exp(a*_t + logcumsumexp_{k<=t}(log z_k + log g(.)_k - a*_k)) + exp(a*_t) h_0,
  log(1 - z) = -softplus(W_z x + b_z), log z = -softplus(-(W_z x + b_z)). The initial state
  enters as exp(a*_t) h_0 (linearity), so h_0 may have any sign; the paper's code takes log h_0
  and needs h_0 > 0. The scan runs over chunks of CHUNK steps, carrying h from one to the next,
  which bounds |a*| and with it the float32 error;
- "compiled": the sequential loop and its hand-written BPTT compiled with numba
  (models/_numba_mingru.py; CPU, float32/float64) on a = 1 - z and b = z h~ from torch.
"auto" runs the compiled loop on CPU (numba installed, float32/float64); else the sequential
loop on CPU (faster than the scan at every CPU shape measured: 1.5x at B = 1, T = 320 and 1024,
4x at B = 64, T = 120; docs/performance.md) and the scan off the CPU from SCAN_FROM steps on
(not measured on a GPU).

Honest properties:
- z and h~ do not depend on h: with zero input (the audio task, input weights frozen) z and h~
  are the constants sigma(b_z), g(b_h), and every unit relaxes monotonically (exponentially) from
  h_0 towards g(b_h). It cannot oscillate or generate a waveform; a learnable initial state would
  only change where the relaxation starts.
- The layer's output is h itself: no output projection (the paper's minGRU projects only when it
  widens the state, an expansion factor other than 1).

Differences from mingru-pytorch 0.2.1 (lucidrains, minGRU_pytorch/minGRU.py), compared in
tests/test_new_cells.py: its `to_hidden_and_gate = Linear(dim, dim_inner * 2, bias = False)` has
no biases (here b_h, b_z, as the paper's nn.Linear); its hidden size is the input size times
an expansion factor with an output projection when that factor is not 1.

Parameters: weight_ih (2n, i) = [W_h; W_z] and bias (2n): 2n i + 2n.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from models.backends import kernel_unsupported, numpy, resolve_kernel, run_kernels

SCAN_FROM = 256  # auto off the CPU: the scan from this many steps on, the sequential loop below it
# The scan runs over chunks of this many steps, carrying h between them: the float32 rounding of
# exp(a*_t + logcumsumexp(...)) grows with |a*_t|, which grows with t, and the parameters'
# gradients sum terms that cancel. On random inputs (T = 300) the scan's outputs and gradients
# agree with the sequential form to 1e-5 at 8 steps a chunk, to 5e-4 at 64, 1e-2 in one piece.
CHUNK = 8


def g(a: torch.Tensor) -> torch.Tensor:
    return torch.where(a >= 0, a + 0.5, torch.sigmoid(a))


def log_g(a: torch.Tensor) -> torch.Tensor:
    return torch.where(a >= 0, (F.relu(a) + 0.5).log(), -F.softplus(-a))


class MinGRU(nn.Module):
    """One minGRU layer with torch.nn.RNN's calling convention (batch_first)."""

    implementations = ("sequential", "scan", "compiled")

    def __init__(self, input_size: int, hidden_size: int, backend: str = "auto"):
        super().__init__()
        self.hidden_size = hidden_size
        self.backend = backend
        self.weight_ih = nn.Parameter(torch.empty(2 * hidden_size, input_size))  # [W_h; W_z]
        self.bias = nn.Parameter(torch.empty(2 * hidden_size))
        bound = 1 / math.sqrt(max(input_size, 1))  # nn.Linear's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def resolved_backend(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> str:
        if self.backend in ("sequential", "scan"):
            return self.backend
        if self.backend == "compiled" or not kernel_unsupported(x, self.weight_ih, h0):
            return resolve_kernel("mingru", "compiled", x, (self.weight_ih, h0), None)  # or why it cannot
        return "scan" if x.device.type != "cpu" and x.shape[1] >= SCAN_FROM else "sequential"

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        """x (B, T, I), h0 (1, B, n) or None -> outputs (B, T, n), h_T (1, B, n)."""
        a_h, a_z = F.linear(x, self.weight_ih, self.bias).chunk(2, dim=-1)
        backend = self.resolved_backend(x, h0)
        h0 = None if h0 is None else h0[0]
        if backend == "compiled":
            z = torch.sigmoid(a_z)
            h = torch.zeros_like(a_h[:, 0]) if h0 is None else h0
            outputs = CompiledMinGRU.apply(1 - z, z * g(a_h), h)
        else:
            outputs = (scan if backend == "scan" else sequential)(a_h, a_z, h0)
        return outputs, outputs[:, -1].unsqueeze(0)


def sequential(a_h: torch.Tensor, a_z: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    z, h_tilde = torch.sigmoid(a_z), g(a_h)
    h = torch.zeros_like(a_h[:, 0]) if h0 is None else h0
    outputs = []
    # unbind, not z[:, t]: the backward of T selects writes T tensors of z's whole size (O(T^2)),
    # that of one unbind a single stack
    for z_t, h_tilde_t in zip(z.unbind(1), h_tilde.unbind(1)):
        h = (1 - z_t) * h + z_t * h_tilde_t
        outputs.append(h)
    return torch.stack(outputs, dim=1)


def scan(a_h: torch.Tensor, a_z: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    log_coeffs = -F.softplus(a_z)  # log(1 - z)
    log_values = -F.softplus(-a_z) + log_g(a_h)  # log(z h~)
    chunks, h = [], h0
    # split, not a slice per chunk: the backward of each slice writes a tensor of the whole size
    for coeffs, values in zip(log_coeffs.split(CHUNK, dim=1), log_values.split(CHUNK, dim=1)):
        a_star = coeffs.cumsum(dim=1)
        out = (a_star + (values - a_star).logcumsumexp(dim=1)).exp()
        if h is not None:
            out = out + a_star.exp() * h[:, None]
        chunks.append(out)
        h = out[:, -1]
    return torch.cat(chunks, dim=1)


KERNELS = "models._numba_mingru"


class CompiledMinGRU(torch.autograd.Function):
    """h_t = a_t h_{t-1} + b_t: forward and BPTT by the loops of models/_numba_mingru.py
    (units in chunks on numba's threads)."""

    @staticmethod
    def forward(ctx, a, b, h0):
        outputs = torch.empty_like(a, memory_format=torch.contiguous_format)
        args = numpy(a), numpy(b), numpy(h0), outputs.numpy()
        run_kernels(KERNELS, "forward", a.shape[0], *args)
        ctx.save_for_backward(outputs, h0, a)
        return outputs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_outputs):
        outputs, h0, a = ctx.saved_tensors
        grad_a, grad_b, grad_h0 = torch.empty_like(outputs), torch.empty_like(outputs), torch.empty_like(h0)
        args = (numpy(grad_outputs), numpy(torch.zeros_like(h0)), outputs.numpy(), numpy(h0), numpy(a),
                grad_a.numpy(), grad_b.numpy(), grad_h0.numpy())
        run_kernels(KERNELS, "backward", outputs.shape[0], *args)
        return grad_a, grad_b, grad_h0


def build(spec, input_size: int, backend: str = "auto") -> MinGRU:
    return MinGRU(input_size, spec.hidden_size, backend)
