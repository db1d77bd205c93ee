"""minGRU's recurrence and its BPTT as compiled loops (numba; CPU, float32 or float64).

Imported lazily by models/mingru.py (minGRU's "compiled" implementation), through
models.backends.numba_kernels, as the IndRNN's loops (models/_numba_indrnn.py), whose layout
and thread split these follow. minGRU's gate and candidate read only the input, so torch
computes a = 1 − z and b = z ⊙ h~ for every step at once (their gradients go back through
torch) and the loops do the linear, elementwise recurrence

    h_t = a_t ⊙ h_{t-1} + b_t

and backwards, with g = dL/dh_t (from the output and from the future),

    dL/db_t = g,    dL/da_t = g ⊙ h_{t-1},    dL/dh_{t-1} = g ⊙ a_t.

Units are independent: the threaded drivers split the units into chunks (the IndRNN's
over_unit_chunks), and nothing is summed across rows or steps, so results do not depend on
the thread count.

numba's on-disk cache keys on this file alone: after editing over_unit_chunks in
models/_numba_indrnn.py, which these drivers inline, delete models/__pycache__/_numba_mingru*
so that they are compiled again.
"""

import numba

from models._numba_indrnn import _INDRNN_FLAGS, over_unit_chunks


@numba.njit(**_INDRNN_FLAGS)
def forward_units(a, b, h0, out, lo, hi):
    """Units [lo, hi) of every row: a, b (B, T, n), h0 (B, n); out (B, T, n) written."""
    for r in range(a.shape[0]):
        prev = h0[r, lo:hi]
        for t in range(a.shape[1]):
            a_t, b_t, h = a[r, t, lo:hi], b[r, t, lo:hi], out[r, t, lo:hi]
            for j in range(h.shape[0]):
                h[j] = a_t[j] * prev[j] + b_t[j]
            prev = h


@numba.njit(**_INDRNN_FLAGS)
def backward_units(grad_out, grad_last, out, h0, a, grad_a, grad_b, grad_h0, lo, hi):
    """BPTT for units [lo, hi) of every row: grad_a, grad_b (B, T, n) and grad_h0 (B, n) written."""
    for r in range(out.shape[0]):
        carry = grad_h0[r, lo:hi]  # dL/dh(t) from the future, ending as dL/dh0
        carry[:] = grad_last[r, lo:hi]
        for t in range(out.shape[1] - 1, -1, -1):
            prev = h0[r, lo:hi] if t == 0 else out[r, t - 1, lo:hi]
            a_t, g_out = a[r, t, lo:hi], grad_out[r, t, lo:hi]
            g_a, g_b = grad_a[r, t, lo:hi], grad_b[r, t, lo:hi]
            for j in range(carry.shape[0]):
                g = g_out[j] + carry[j]
                g_b[j] = g
                g_a[j] = g * prev[j]
                carry[j] = g * a_t[j]


@numba.njit(parallel=True, **_INDRNN_FLAGS)
def forward(a, b, h0, out):
    """All units, chunks of UNITS on numba's threads."""
    over_unit_chunks(forward_units, out.shape[2], (a, b, h0, out))


@numba.njit(parallel=True, **_INDRNN_FLAGS)
def backward(grad_out, grad_last, out, h0, a, grad_a, grad_b, grad_h0):
    """All units, chunks of UNITS on numba's threads."""
    over_unit_chunks(backward_units, out.shape[2], (grad_out, grad_last, out, h0, a, grad_a, grad_b, grad_h0))


@numba.njit(**_INDRNN_FLAGS)
def forward_serial(a, b, h0, out):
    """`forward` on the calling thread alone: the same bits."""
    forward_units(a, b, h0, out, 0, out.shape[2])


@numba.njit(**_INDRNN_FLAGS)
def backward_serial(grad_out, grad_last, out, h0, a, grad_a, grad_b, grad_h0):
    """`backward` on the calling thread alone: the same bits."""
    backward_units(grad_out, grad_last, out, h0, a, grad_a, grad_b, grad_h0, 0, out.shape[2])


# the names models.backends.numba_kernels hands on beside the drivers (a block here: a range of units)
forward_block, backward_block = forward_units, backward_units
