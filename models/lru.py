"""Linear Recurrent Unit (Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De, "Resurrecting
Recurrent Neural Networks for Long Sequences", ICML 2023): a complex diagonal linear
recurrence with a stable exponential parametrisation, read out by a linear map.

    lambda = exp(-exp(nu) + i exp(theta))           (|lambda| < 1 for any real nu, theta)
    x_t    = lambda * x_{t-1} + gamma * (B u_t)     x complex, size N
    y_t    = Re(C x_t) + D u_t                      y real, size H
    gamma  = exp(gamma_log), initialised to sqrt(1 - |lambda|^2) (and trained, as in the
             paper's appendix A code)

The layer's "hidden" output, what the benchmark's readout reads, is y: the state size N is
the hidden size H, so C is H x N complex. D is a full H x I matrix: the paper's D is diagonal
because its layer's input and output widths are equal, here they are not (lru-pytorch also
uses a full matrix). There is no nonlinearity in the layer (the paper puts an MLP/GLU after
it in a deep block; the benchmark's rows are one recurrent layer and a linear readout).

Ring initialisation (the paper's appendix A, its defaults r_min = 0, r_max = 1,
max_phase = 2 pi): |lambda|^2 ~ U(r_min^2, r_max^2), arg(lambda) ~ U(0, max_phase);
B (re and im) ~ N(0, 1/(2 I)), C (re and im) ~ N(0, 1/N), D ~ N(0, 1/I).

Two implementations of the same function:
- "sequential": the recurrence above, one step at a time;
- "scan": a parallel (Hillis-Steele) scan in ceil(log2 T) steps: after step k every x_t holds
  the sum over its last 2^k inputs, x_t += lambda^(2^k) x_{t-2^k}; stable, as |lambda| < 1.
  The initial state enters as lambda^(t+1) x_0. "auto" runs the scan from SCAN_FROM steps on,
  on CPU only while batch x hidden <= SCAN_UP_TO: the scan does log2(T) times the sequential
  loop's arithmetic in a few ops, the loop T small ops, so the scan wins while the per-op
  overhead dominates (B = 1 at the audio shape) and loses above (3x slower at B = 64, T = 120,
  n = 61: docs/performance.md).

Honest property: the layer is linear in its input and its initial state. With zero input
(the audio task, input weights frozen) and x_0 = 0 it outputs 0 at every step: only the
readout's bias can learn there.

The state passed between calls is (y_T, Re x_T, Im x_T), each (1, B, n), like an LSTM's
(h, c): y_T is the last output (ignored when given back as h0), x_T the complex state.

Every complex parameter is stored as two real ones (re, im) and so counts as 2 reals.
Parameters: nu, theta, gamma_log (3N); B (2 N I); C (2 H N); D (H I). With N = H = n:
2 n^2 + 3 n i + 3 n.

Differences from lru-pytorch 0.1.3 (LRU_pytorch/LRU.py), compared in tests/test_new_cells.py: none
in the function; it stores B and C as complex parameters (`self.B=nn.Parameter(torch.complex(
B_re,B_im))`), which torch's numel counts as one each, and loops over the batch one sequence
at a time.
"""

import math

import torch
from torch import nn

R_MIN, R_MAX, MAX_PHASE = 0.0, 1.0, 2 * math.pi
SCAN_FROM = 16  # auto: the scan from this many steps on (CPU measurements)
SCAN_UP_TO = 512  # on CPU, and while batch x hidden is at most this (faster at 61-336, slower at 976-3904)


class LRU(nn.Module):
    """One LRU layer with torch.nn.RNN's calling convention (batch_first): forward(x, state or
    None) -> outputs (B, T, n), (y_T, Re x_T, Im x_T) each (1, B, n)."""

    implementations = ("sequential", "scan")
    # not weights: a paper-style re-initialisation of the weights (models.registry.initialise)
    # leaves the ring initialisation as it is
    own_initialisation = ("nu_log", "theta_log", "gamma_log")

    def __init__(self, input_size: int, hidden_size: int, backend: str = "auto"):
        super().__init__()
        n, i = hidden_size, input_size
        self.hidden_size = n
        self.backend = backend
        self.nu_log = nn.Parameter(torch.empty(n))
        self.theta_log = nn.Parameter(torch.empty(n))
        self.gamma_log = nn.Parameter(torch.empty(n))
        self.weight_ih_re = nn.Parameter(torch.empty(n, i))  # B; named so freeze_input_weights finds it
        self.weight_ih_im = nn.Parameter(torch.empty(n, i))
        self.weight_out_re = nn.Parameter(torch.empty(n, n))  # C
        self.weight_out_im = nn.Parameter(torch.empty(n, n))
        self.weight_ih_skip = nn.Parameter(torch.empty(n, i))  # D
        self.reset_parameters()

    def reset_parameters(self):
        n, i = self.hidden_size, max(self.weight_ih_re.shape[1], 1)
        with torch.no_grad():
            u1, u2 = torch.rand(n), torch.rand(n)
            self.nu_log.copy_(torch.log(-0.5 * torch.log(u1 * (R_MAX ** 2 - R_MIN ** 2) + R_MIN ** 2)))
            self.theta_log.copy_(torch.log(MAX_PHASE * u2))
            modulus = torch.exp(-torch.exp(self.nu_log))
            self.gamma_log.copy_(torch.log(torch.sqrt(1 - modulus ** 2)))
            for p in (self.weight_ih_re, self.weight_ih_im):
                nn.init.normal_(p, 0.0, 1 / math.sqrt(2 * i))
            for p in (self.weight_out_re, self.weight_out_im):
                nn.init.normal_(p, 0.0, 1 / math.sqrt(n))
            nn.init.normal_(self.weight_ih_skip, 0.0, 1 / math.sqrt(i))

    def resolved_backend(self, x: torch.Tensor) -> str:
        if self.backend != "auto":
            return self.backend
        small = x.device.type != "cpu" or x.shape[0] * self.hidden_size <= SCAN_UP_TO
        return "scan" if x.shape[1] >= SCAN_FROM and small else "sequential"

    def log_lambda(self) -> torch.Tensor:
        return torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))

    def forward(self, x: torch.Tensor, h0: tuple[torch.Tensor, ...] | None = None):
        """x (B, T, I), (y_0, Re x_0, Im x_0) or None -> outputs (B, T, n), (y_T, Re x_T, Im x_T)."""
        gamma = torch.exp(self.gamma_log)
        b = torch.complex(nn.functional.linear(x, self.weight_ih_re * gamma[:, None]),
                          nn.functional.linear(x, self.weight_ih_im * gamma[:, None]))  # gamma * (B u_t)
        x0 = None if h0 is None else torch.complex(h0[1][0], h0[2][0])
        run = scan if self.resolved_backend(x) == "scan" else sequential
        states = run(self.log_lambda(), b, x0)  # (B, T, N) complex
        linear = nn.functional.linear
        y = (linear(states.real, self.weight_out_re) - linear(states.imag, self.weight_out_im)
             + linear(x, self.weight_ih_skip))
        last = states[:, -1]
        return y, (y[:, -1].unsqueeze(0), last.real.unsqueeze(0), last.imag.unsqueeze(0))


def sequential(log_lambda: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
    lam = torch.exp(log_lambda)
    state = torch.zeros_like(b[:, 0]) if x0 is None else x0
    states = []
    for b_t in b.unbind(1):  # not b[:, t]: T selects' backward writes T tensors of b's whole size
        state = lam * state + b_t
        states.append(state)
    return torch.stack(states, dim=1)


def scan(log_lambda: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
    steps = b.shape[1]
    states, power, d = b, torch.exp(log_lambda), 1
    while d < steps:  # states[t] = sum of lambda^(t-k) b_k over the last 2d inputs k
        states = torch.cat([states[:, :d], states[:, d:] + power * states[:, :-d]], dim=1)
        power, d = power * power, 2 * d
    if x0 is not None:
        t = torch.arange(1, steps + 1, dtype=log_lambda.real.dtype, device=b.device)
        states = states + torch.exp(t[:, None] * log_lambda) * x0[:, None]  # lambda^(t+1) x_0
    return states


def build(spec, input_size: int, backend: str = "auto") -> LRU:
    return LRU(input_size, spec.hidden_size, backend)
