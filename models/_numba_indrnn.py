"""The IndRNN recurrence and its BPTT as compiled loops (numba; CPU, float32 or float64).

Imported lazily by models/indrnn.py (the IndRNN's "compiled" implementation), through
models.backends.numba_kernels, which picks the serial or the threaded drivers below as it
does for the CW-RNN and GRU kernels. With xw = x W^T + b from torch (every step at once):

    h_t = relu(xw_t + u ⊙ h_{t-1})

and backwards, with g = dL/dh_t (from the output and from the future),

    d_t      = g ⊙ [h_t > 0]           -> the gradient of xw_t (torch's relu backward: 0 at 0)
    dL/du   += d_t ⊙ h_{t-1}
    dL/dh_{t-1} = d_t ⊙ u

Each unit reads only its own past, so units are independent: the threaded drivers split
the units (not the batch) into chunks, and each unit's gradient dL/du sums over rows and
steps in the same order whatever the chunk it lands in: results do not depend on the
thread count. No transcendental function: float32 is torch's arithmetic up to the order
of the sums (and a fused multiply-add where `fastmath` contracts one).
"""

import numba
import numpy as np

from models._numba_kernels import _FLAGS

_INDRNN_FLAGS = dict(_FLAGS, error_model="numpy")  # no division here; keeps the unit loops vectorisable

UNITS = 64  # units per chunk on numba's threads


@numba.njit(**_INDRNN_FLAGS)
def forward_units(xw, h0, u, out, lo, hi):
    """Units [lo, hi) of every row: xw (B, T, n), h0 (B, n), u (n); out (B, T, n) written."""
    batch, steps = xw.shape[0], xw.shape[1]
    zero = np.zeros(1, dtype=out.dtype)[0]  # with the literal 0 float32 states would be promoted
    w = u[lo:hi]
    for b in range(batch):
        prev = h0[b, lo:hi]
        for t in range(steps):
            x_t, h = xw[b, t, lo:hi], out[b, t, lo:hi]
            for j in range(w.shape[0]):
                v = x_t[j] + w[j] * prev[j]
                h[j] = zero if v < zero else v  # NaN stays NaN, as in torch's relu
            prev = h


@numba.njit(**_INDRNN_FLAGS)
def backward_units(grad_out, grad_last, out, h0, u, grad_xw, grad_h0, grad_u, lo, hi):
    """BPTT for units [lo, hi) of every row: grad_xw (B, T, n), grad_h0 (B, n) and
    grad_u[lo:hi] (zeroed on entry) written. grad_xw may be grad_out itself: step t of
    grad_out is read before step t of grad_xw is written."""
    batch, steps = out.shape[0], out.shape[1]
    zero = np.zeros(1, dtype=out.dtype)[0]
    w, gu = u[lo:hi], grad_u[lo:hi]
    carry = np.empty(hi - lo, dtype=out.dtype)
    for b in range(batch):
        carry[:] = grad_last[b, lo:hi]
        for t in range(steps - 1, -1, -1):
            prev = h0[b, lo:hi] if t == 0 else out[b, t - 1, lo:hi]
            h, g_out, g_xw = out[b, t, lo:hi], grad_out[b, t, lo:hi], grad_xw[b, t, lo:hi]
            for j in range(w.shape[0]):
                d = zero if h[j] <= zero else g_out[j] + carry[j]  # torch's threshold_backward
                g_xw[j] = d
                gu[j] += d * prev[j]
                carry[j] = d * w[j]
        grad_h0[b, lo:hi] = carry


@numba.njit(inline="always", **_INDRNN_FLAGS)
def over_unit_chunks(units, n, args):
    """units(*args, lo, hi) for each chunk [lo, hi) of UNITS of the n units: the threaded
    drivers' loop (here and in models/_numba_mingru.py). Inlined into the driver before numba
    compiles it, so that the prange becomes the driver's own parallel loop and `units` (a
    module's global) a direct call; taken as a closure or a first-class function, `units`
    would make numba's on-disk cache miss in every new process (its key pickles the
    dispatcher, with a uuid of the process)."""
    for chunk in numba.prange((n + UNITS - 1) // UNITS):
        units(*args, chunk * UNITS, min(n, (chunk + 1) * UNITS))


@numba.njit(parallel=True, **_INDRNN_FLAGS)
def forward(xw, h0, u, out):
    """All units, chunks of UNITS on numba's threads."""
    over_unit_chunks(forward_units, out.shape[2], (xw, h0, u, out))


@numba.njit(parallel=True, **_INDRNN_FLAGS)
def backward(grad_out, grad_last, out, h0, u, grad_xw, grad_h0, grad_u):
    """All units, chunks of UNITS on numba's threads (each unit's sums in the serial order)."""
    over_unit_chunks(backward_units, out.shape[2], (grad_out, grad_last, out, h0, u, grad_xw, grad_h0, grad_u))


@numba.njit(**_INDRNN_FLAGS)
def forward_serial(xw, h0, u, out):
    """`forward` on the calling thread alone: the same bits."""
    forward_units(xw, h0, u, out, 0, out.shape[2])


@numba.njit(**_INDRNN_FLAGS)
def backward_serial(grad_out, grad_last, out, h0, u, grad_xw, grad_h0, grad_u):
    """`backward` on the calling thread alone: the same bits (units are independent)."""
    backward_units(grad_out, grad_last, out, h0, u, grad_xw, grad_h0, grad_u, 0, out.shape[2])


# the names models.backends.numba_kernels hands on beside the drivers (a block here: a range of units)
forward_block, backward_block = forward_units, backward_units
