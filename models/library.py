"""torch's nn.RNN and nn.GRU, each also on a compiled CPU kernel, and which one `auto` runs.

`RNN` and `GRU` are nn.RNN and nn.GRU, subclassed: the same parameters, names, initial
draws, state_dict and parameter counts, and with backend "torch" exactly torch's forward.
Backend "compiled" computes the same function another way: torch takes the input
projections of every step in one matrix product, and numba loops run the recurrence and
its hand-written BPTT.

- rnn: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) is a Clockwork RNN of one module with
  period 1 (docs/cwrnn.md), so it runs the CW-RNN's compiled recurrence
  (models/backends.py: CompiledRecurrence) on xw = x W_ih^T + b_ih + b_hh.
- gru: the loops of models/_numba_gru.py (nn.GRU's equations are written there).

Why: on CPU torch runs a tanh RNN and a GRU as a loop of small ATen ops per step, and
autograd goes back through each of them; at the sizes of the paper's tasks that per-op
overhead is most of the time (nearly all of a GRU's fwd+bwd at the audio shape:
docs/performance.md). The loops have no per-op overhead, but torch's
matrix products are faster at large sizes: `pick_implementation` chooses by shape.

"compiled" runs on CPU in float32 and float64, for what the loops implement: tanh, one
layer, one direction, batch_first, a batched (B, T, I) input with B, T >= 1. `auto` runs
torch for anything else; asking for "compiled" there is an error that says why.

`rnn_layer`, `gru_layer` and `lstm_layer` are the builders the architecture table
(models/architectures.py) names for rnn, gru and lstm.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.backends import CompiledRecurrence, compiled_plan, numba_available, numba_kernels, numpy
from models.errors import UserInputError
from models.names import check_implementation

ONE_ROW = np.zeros(1, dtype=np.int64)  # the batch rows of a one-row call: row 0


class RNN(nn.RNN):
    """torch.nn.RNN with a `backend`: "torch", "compiled" or "auto" (the faster one)."""

    def __init__(self, *args, backend: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        check_implementation("rnn", backend)
        self.backend = backend

    def resolved_backend(self, x: torch.Tensor, hx: torch.Tensor | None = None) -> str:
        return resolve(self, "rnn", x, hx)

    def forward(self, input, hx=None):
        if self.resolved_backend(input, hx) == "torch":
            return super().forward(input, hx)
        h0 = initial_state(self, input, hx)
        bias = self.bias_ih_l0 + self.bias_hh_l0 if self.bias else None
        xw = nn.functional.linear(input, self.weight_ih_l0, bias)
        _, plan = compiled_plan((self.hidden_size,), (1,), (1,), 0)  # one module of period 1: all fire at every step
        outputs, h_last = CompiledRecurrence.apply(xw, h0, self.weight_hh_l0, plan, 0)
        return outputs, h_last.unsqueeze(0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend}"


class GRU(nn.GRU):
    """torch.nn.GRU with a `backend`: "torch", "compiled" or "auto" (the faster one)."""

    def __init__(self, *args, backend: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        check_implementation("gru", backend)
        self.backend = backend

    def resolved_backend(self, x: torch.Tensor, hx: torch.Tensor | None = None) -> str:
        return resolve(self, "gru", x, hx)

    def forward(self, input, hx=None):
        if self.resolved_backend(input, hx) == "torch":
            return super().forward(input, hx)
        h0 = initial_state(self, input, hx)
        n = self.hidden_size
        if self.bias:
            # b_hr and b_hz add like the input biases; b_hn is multiplied by r, so the kernel takes it
            bias = self.bias_ih_l0 + nn.functional.pad(self.bias_hh_l0[: 2 * n], (0, n))
            b_hn = self.bias_hh_l0[2 * n :]
        else:
            bias, b_hn = None, input.new_zeros(n)
        xw = nn.functional.linear(input, self.weight_ih_l0, bias)
        outputs, h_last = CompiledGRU.apply(xw, h0, self.weight_hh_l0, b_hn)
        return outputs, h_last.unsqueeze(0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend}"


def rnn_layer(spec, input_size: int, backend: str = "auto") -> RNN:
    """The builder of the architecture table's "rnn" (models/architectures.py)."""
    return RNN(input_size, spec.hidden_size, batch_first=True, backend=backend)


def gru_layer(spec, input_size: int, backend: str = "auto") -> GRU:
    return GRU(input_size, spec.hidden_size, batch_first=True, backend=backend)


def lstm_layer(spec, input_size: int, backend: str = "auto") -> nn.LSTM:
    """torch.nn.LSTM itself: its one implementation is torch's (oneDNN on CPU, cuDNN on a GPU)."""
    return nn.LSTM(input_size, spec.hidden_size, batch_first=True)


def initial_state(module, x, hx):
    """(B, n) from hx (1, B, n) or zeros, after torch's own checks (and messages) of both shapes."""
    h0 = x.new_zeros(1, x.shape[0], module.hidden_size) if hx is None else hx
    module.check_forward_args(x, h0, None)
    return h0[0]


def resolve(module, arch: str, x, hx=None) -> str:
    """The implementation `module` runs on x: its backend, or for "auto" the faster one."""
    if module.backend == "torch":
        return "torch"
    why = unsupported(module, x, hx)
    if module.backend == "compiled":
        if why:
            raise UserInputError(f"the 'compiled' {arch} implementation cannot run this: {why}; use backend "
                                 "'auto' or 'torch'")
        return "compiled"
    if why:
        return "torch"
    return pick_implementation(arch, x.device.type, x.dtype, x.shape[0], module.hidden_size, x.shape[1])


def unsupported(module, x, hx=None) -> str:
    """Why the compiled loops cannot run `module` on x ("" if they can)."""
    if not numba_available():
        return "numba is not installed"
    if not isinstance(x, torch.Tensor):
        return "packed sequences run on torch"
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return f"it runs on CPU in float32/float64, not on {x.device.type} in {x.dtype}"
    if module.num_layers != 1 or module.bidirectional or not module.batch_first:
        return "it runs one layer, one direction, batch_first=True"
    if getattr(module, "nonlinearity", "tanh") != "tanh":
        return f"it runs tanh, not {module.nonlinearity}"
    if x.dim() != 3 or x.shape[0] == 0 or x.shape[1] == 0:
        return f"it needs a batched input (B, T, I) with B, T >= 1, not of shape {tuple(x.shape)}"
    if module.weight_hh_l0.dtype != x.dtype or (hx is not None and hx.dtype != x.dtype):
        return f"the input is {x.dtype} but the weights or initial state are not"
    return ""


def pick_implementation(arch: str, device: str, dtype, batch: int, hidden: int, steps: int) -> str:
    """The faster implementation of rnn or gru for this device and shape (fwd+bwd), as measured
    on a 2-core CPU (docs/performance.md has the table of compiled / torch by batch, hidden
    size and length; `cwbench perf kernels` times both at the suite's shapes).

    On CPU the compiled loops win while batch x hidden is small, where torch's per-step op
    overhead is most of the time; above it torch's matrix products win. The sequence length
    barely moves the ratios, so the rule ignores `steps`.

    - gru: compiled up to batch x hidden = 16384 (B = 64 h = 256), torch above.
    - rnn: compiled up to batch x hidden = 512, or 2048 for batches of at most 8; torch
      above. The rnn runs the CW-RNN's kernel, whose per-unit dot products and tanh do not
      vectorise across units as the gru's loops do: torch's matrix products catch up with
      the batch sooner.

    Measured on 1 torch thread; on 2 the compiled kernels also win wherever the rule picks
    them, so one rule for both thread counts keeps the choice, and the float32 bits,
    independent of the thread count.

    GPU, half precision, or no numba: torch (cuDNN on a GPU).
    """
    if device != "cpu" or dtype not in (torch.float32, torch.float64) or not numba_available():
        return "torch"
    if arch == "gru":
        return "compiled" if batch * hidden <= 16384 else "torch"
    return "compiled" if batch * hidden <= (2048 if batch <= 8 else 512) else "torch"


class CompiledGRU(torch.autograd.Function):
    """The GRU recurrence on xw = x W_ih^T + b_ih + (b_hr, b_hz, 0): forward and BPTT by the
    loops of models/_numba_gru.py, batch rows on numba's threads."""

    @staticmethod
    def forward(ctx, xw, h0, weight_hh, b_hn):
        batch, steps, _ = xw.shape
        n = weight_hh.shape[1]
        outputs = xw.new_empty(batch, steps, n)
        gates = xw.new_empty(batch, steps, 4 * n)  # r, z, n, W_hn h + b_hn of every step, for the backward
        args = numpy(xw), numpy(h0), numpy(weight_hh.T), numpy(b_hn), outputs.numpy(), gates.numpy()
        with numba_kernels("models._numba_gru") as kernels:
            if batch == 1:  # one row: skip the thread pool
                kernels.forward_block(*args, ONE_ROW)
            else:
                kernels.forward(*args)
        ctx.save_for_backward(outputs, gates, h0, weight_hh)
        return outputs, outputs[:, -1].clone()  # a view would tie the two outputs together

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_outputs, grad_h_last):
        from models._numba_kernels import CHUNKS, ROWS

        outputs, gates, h0, weight_hh = ctx.saved_tensors
        batch, steps, n = outputs.shape
        grad_outputs = torch.zeros_like(outputs) if grad_outputs is None else grad_outputs
        grad_h_last = outputs.new_zeros(batch, n) if grad_h_last is None else grad_h_last
        grad_xw, grad_h0 = outputs.new_empty(batch, steps, 3 * n), outputs.new_empty(batch, n)
        chunks = min(-(-batch // ROWS), CHUNKS)  # blocks of ROWS rows, at most CHUNKS
        grad_w, grad_b_hn = outputs.new_zeros(chunks, 3 * n, n), outputs.new_zeros(chunks, n)
        args = (numpy(grad_outputs), numpy(grad_h_last), outputs.numpy(), gates.numpy(), numpy(h0),
                numpy(weight_hh), grad_xw.numpy(), grad_h0.numpy())
        with numba_kernels("models._numba_gru") as kernels:
            if batch == 1:  # one row: skip the thread pool
                kernels.backward_block(*args, grad_w[0].numpy(), grad_b_hn[0].numpy(), ONE_ROW)
            else:
                kernels.backward(*args, grad_w.numpy(), grad_b_hn.numpy())
        for c in range(1, chunks):  # in a fixed order: the sums do not depend on the threads
            grad_w[0] += grad_w[c]
            grad_b_hn[0] += grad_b_hn[c]
        return grad_xw, grad_h0, grad_w[0], grad_b_hn[0]
