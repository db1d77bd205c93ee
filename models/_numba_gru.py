"""The GRU recurrence and its BPTT as compiled loops (numba; CPU, float32 or float64).

Imported lazily by models/library.py (the GRU's "compiled" implementation), through
models.backends.numba_kernels, which picks the serial or the threaded drivers below as it
does for the CW-RNN kernels of models/_numba_kernels.py. torch's nn.GRU, gates in the
order r, z, n (rows of weight_ih and weight_hh):

    r = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ a),      a = W_hn h + b_hn
    h' = (1 − z) ⊙ n + z ⊙ h             (computed as torch does: n + z ⊙ (h − n))

The input projections of every step come from torch, with the biases that are plain sums
folded in: xw = x W_ih^T + b_ih + (b_hr, b_hz, 0). Only b_hn stays separate (r multiplies
it). The loops here do the recurrent part: per step the products W_hh h (3n of them) and
the gates; backwards, with g = dL/dh' (from the output and from the future),

    dn_pre = g (1 − z) (1 − n²)       -> the gradient of xw's n part
    da     = dn_pre r                 -> of W_hn h + b_hn
    dr_pre = dn_pre a r (1 − r)       -> of xw's r part and of W_hr h
    dz_pre = g (h − n) z (1 − z)      -> of xw's z part and of W_hz h
    dL/dh  = g z + W_hh^T (dr_pre, dz_pre, da),   dL/dW_hh += (dr_pre, dz_pre, da) h^T

The forward keeps r, z, n and a of every step for the backward (4n floats a step, as
torch's own GRU keeps its gates).

From the CW-RNN kernels (models/_numba_kernels.py has their measurements): batch rows in
blocks of ROWS on numba's threads, the rows of a block going through the products
together so that each weight element loaded serves every row; the float32 rational tanh,
and sigmoid(x) = (1 + tanh(x / 2)) / 2 from it; libm in float64, so that float64 matches
torch to rounding; the backward's products four weight rows at a time. Weight gradients
are summed per chunk of blocks and the chunks added in a fixed order by the caller:
results do not depend on the thread count. Two changes made the forward faster than the
CW-RNN's form (docs/performance.md has the measurements):
- W_hh h as a sum of W_hh's columns weighted by the state, not one dot product per unit:
  no sums across a vector's lanes, and loops of 3n;
- the gates in one short loop each, over slices indexed from 0, under NumPy's error
  model (_GRU_FLAGS): only then does LLVM vectorise the sigmoids and tanh.

numba's on-disk cache keys on this file alone: after editing the tanh in
models/_numba_kernels.py, which these loops inline, delete models/__pycache__/_numba_gru*
so that they are compiled again.
"""

import numba
import numpy as np
from numba import types
from numba.extending import overload

from models._numba_kernels import (
    _FLAGS,
    ROWS,
    activation,
    over_gradient_chunks,
    over_row_blocks,
    previous_states,
    rational_tanh,
)

# numba's default error model checks every float division for a zero divisor (to raise
# ZeroDivisionError), and that branch keeps LLVM from vectorising the gate loops (the
# rational tanh divides). NumPy's error model does not check; no divisor here can be zero
# (the tanh's denominator is a positive polynomial, the sigmoid's is 1 + e^-x >= 1).
_GRU_FLAGS = dict(_FLAGS, error_model="numpy")


def sigmoid(x):
    """σ(x): (1 + tanh(x / 2)) / 2 with the rational tanh in float32, 1 / (1 + e^-x) (torch's
    formula) in float64 (chosen at compile time)."""
    return 1 / (1 + np.exp(-x))


@overload(sigmoid, inline="always", fastmath=_FLAGS["fastmath"])
def _sigmoid(x):
    if x == types.float32:
        half = np.float32(0.5)
        return lambda x: half + half * rational_tanh(half * x)
    return lambda x: 1 / (1 + np.exp(-x))


@numba.njit(**_GRU_FLAGS)
def sigmoid_float32(x, out):
    """The float32 sigmoid of the kernels on an array (for its test)."""
    for i in range(x.shape[0]):
        out[i] = sigmoid(x[i])


@numba.njit(inline="always", **_GRU_FLAGS)
def recurrent_products(w_t, prev, count, gh):
    """gh[i] = W_hh prev[i] for the block's rows i < count, summed as the columns of W_hh
    (the rows of w_t = W_hh^T, (n, 3n)) weighted by the state: loops over contiguous
    rows of 3n, with no sum across a vector's lanes. Two columns and four batch rows at a
    time, so that each element of gh is loaded and stored once per two columns and each
    element of w_t serves every row (one batch row: one column at a time)."""
    gh[:] = 0
    g0 = gh[0]
    if count == 1:
        for v in range(w_t.shape[0]):
            s0, w_v = prev[0, v], w_t[v]
            for u in range(w_v.shape[0]):
                g0[u] += s0 * w_v[u]
        return
    g1, g2, g3 = gh[1], gh[2], gh[3]
    v = 0
    while v < w_t.shape[0]:
        if v + 2 > w_t.shape[0]:  # the last column (n odd)
            w_v = w_t[v]
            a0, a1, a2, a3 = prev[0, v], prev[1, v], prev[2, v], prev[3, v]
            for u in range(w_v.shape[0]):
                x = w_v[u]
                g0[u] += a0 * x
                g1[u] += a1 * x
                g2[u] += a2 * x
                g3[u] += a3 * x
            v += 1
            continue
        w_v, w_x = w_t[v], w_t[v + 1]
        a0, a1, a2, a3 = prev[0, v], prev[1, v], prev[2, v], prev[3, v]
        b0, b1, b2, b3 = prev[0, v + 1], prev[1, v + 1], prev[2, v + 1], prev[3, v + 1]
        for u in range(w_v.shape[0]):
            x, y = w_v[u], w_x[u]
            g0[u] += a0 * x + b0 * y
            g1[u] += a1 * x + b1 * y
            g2[u] += a2 * x + b2 * y
            g3[u] += a3 * x + b3 * y
        v += 2


@numba.njit(inline="always", **_GRU_FLAGS)
def transposed_products(w, delta, prev, count, carry, grad_w):
    """carry[i] += W_hh^T delta[i] and grad_w += delta[i] prev[i]^T over the block's rows:
    four weight rows and four batch rows at a time, so that each carry element is loaded
    and stored once per four weight rows (one row: one weight row at a time)."""
    p0, c0 = prev[0], carry[0]
    if count == 1:
        for u in range(w.shape[0]):
            d0, w_u, grad_w_u = delta[0, u], w[u], grad_w[u]
            for v in range(w_u.shape[0]):
                grad_w_u[v] += d0 * p0[v]
                c0[v] += w_u[v] * d0
        return
    p1, p2, p3 = prev[1], prev[2], prev[3]
    c1, c2, c3 = carry[1], carry[2], carry[3]
    u = 0
    while u < w.shape[0]:
        if u + 4 > w.shape[0]:  # the last rows, one at a time
            d0, d1, d2, d3 = delta[0, u], delta[1, u], delta[2, u], delta[3, u]
            w_u, grad_w_u = w[u], grad_w[u]
            for v in range(w_u.shape[0]):
                grad_w_u[v] += d0 * p0[v] + d1 * p1[v] + d2 * p2[v] + d3 * p3[v]
                c0[v] += w_u[v] * d0
                c1[v] += w_u[v] * d1
                c2[v] += w_u[v] * d2
                c3[v] += w_u[v] * d3
            u += 1
            continue
        wa, wb, wc, wd = w[u], w[u + 1], w[u + 2], w[u + 3]
        ga, gb, gc, gd = grad_w[u], grad_w[u + 1], grad_w[u + 2], grad_w[u + 3]
        a0, a1, a2, a3 = delta[0, u], delta[1, u], delta[2, u], delta[3, u]
        b0, b1, b2, b3 = delta[0, u + 1], delta[1, u + 1], delta[2, u + 1], delta[3, u + 1]
        e0, e1, e2, e3 = delta[0, u + 2], delta[1, u + 2], delta[2, u + 2], delta[3, u + 2]
        f0, f1, f2, f3 = delta[0, u + 3], delta[1, u + 3], delta[2, u + 3], delta[3, u + 3]
        for v in range(wa.shape[0]):
            q0, q1, q2, q3 = p0[v], p1[v], p2[v], p3[v]
            ga[v] += a0 * q0 + a1 * q1 + a2 * q2 + a3 * q3
            gb[v] += b0 * q0 + b1 * q1 + b2 * q2 + b3 * q3
            gc[v] += e0 * q0 + e1 * q1 + e2 * q2 + e3 * q3
            gd[v] += f0 * q0 + f1 * q1 + f2 * q2 + f3 * q3
            xa, xb, xc, xd = wa[v], wb[v], wc[v], wd[v]
            c0[v] += xa * a0 + xb * b0 + xc * e0 + xd * f0
            c1[v] += xa * a1 + xb * b1 + xc * e1 + xd * f1
            c2[v] += xa * a2 + xb * b2 + xc * e2 + xd * f2
            c3[v] += xa * a3 + xb * b3 + xc * e3 + xd * f3
        u += 4


@numba.njit(**_GRU_FLAGS)
def forward_block(xw, h0, w_t, b_hn, out, gates, rows):
    """The batch rows `rows` (at most ROWS): xw (B, T, 3n), h0 (B, n), w_t = W_hh^T (n, 3n),
    b_hn (n); their rows of out (B, T, n) and gates (B, T, 4n: r, z, n, a) written."""
    steps, n, count = out.shape[1], out.shape[2], rows.shape[0]
    prev = np.zeros((ROWS, n), dtype=out.dtype)  # rows past the block's end stay zero
    gh = np.zeros((ROWS, 3 * n), dtype=out.dtype)
    for t in range(steps):
        previous_states(h0, out, t, rows, prev)
        recurrent_products(w_t, prev, count, gh)
        for i in range(count):
            # Per gate a slice indexed from 0 (numba then drops its negative-index checks), and
            # one short loop per gate: LLVM vectorises a loop only when it can check every pair
            # of arrays it reads and writes for overlap, and gives up on one loop over all of
            # them (the transcendental functions then ran one lane at a time).
            x_r, x_z, x_n = xw[rows[i], t, :n], xw[rows[i], t, n : 2 * n], xw[rows[i], t, 2 * n :]
            h_r, h_z, h_n = gh[i, :n], gh[i, n : 2 * n], gh[i, 2 * n :]
            g = gates[rows[i], t]
            r, z, candidate, a = g[:n], g[n : 2 * n], g[2 * n : 3 * n], g[3 * n :]
            h_prev, h = prev[i], out[rows[i], t]
            for u in range(n):
                r[u] = sigmoid(x_r[u] + h_r[u])
            for u in range(n):
                z[u] = sigmoid(x_z[u] + h_z[u])
            for u in range(n):
                a[u] = h_n[u] + b_hn[u]
            for u in range(n):
                candidate[u] = activation(x_n[u] + r[u] * a[u])
            for u in range(n):
                h[u] = candidate[u] + z[u] * (h_prev[u] - candidate[u])


@numba.njit(**_GRU_FLAGS)
def backward_block(grad_out, grad_last, out, gates, h0, w, grad_xw, grad_h0, grad_w, grad_b_hn, rows):
    """BPTT for the batch rows `rows` (at most ROWS). grad_w (3n, n) and grad_b_hn (n)
    accumulate (they come in zeroed); their rows of grad_xw (B, T, 3n) and grad_h0 are
    written. carry is dL/dh(t) from the future (through h(t+1) and the final state)."""
    steps, n, count = out.shape[1], out.shape[2], rows.shape[0]
    carry = np.zeros((ROWS, n), dtype=out.dtype)  # rows past the block's end stay zero
    prev = np.zeros((ROWS, n), dtype=out.dtype)
    delta = np.zeros((ROWS, 3 * n), dtype=out.dtype)  # dL/d(W_hh h + (0, 0, b_hn)): r, z, a
    one = np.ones(1, dtype=out.dtype)[0]  # with the literal 1 float32 gates would be promoted to float64
    for i in range(count):
        carry[i] = grad_last[rows[i]]
    for t in range(steps - 1, -1, -1):
        previous_states(h0, out, t, rows, prev)
        for i in range(count):
            g = gates[rows[i], t]  # slices indexed from 0 and a loop per quantity, as in the forward
            r, z, candidate, a = g[:n], g[n : 2 * n], g[2 * n : 3 * n], g[3 * n :]
            grad_t = grad_xw[rows[i], t]
            d_r, d_z, d_candidate = grad_t[:n], grad_t[n : 2 * n], grad_t[2 * n :]
            d_a, grad_h, h_prev, c = delta[i, 2 * n :], grad_out[rows[i], t], prev[i], carry[i]
            for u in range(n):
                c[u] += grad_h[u]  # now dL/dh(t)
            for u in range(n):
                d_candidate[u] = c[u] * (one - z[u]) * (one - candidate[u] * candidate[u])
            for u in range(n):
                d_a[u] = d_candidate[u] * r[u]
            for u in range(n):
                d_r[u] = d_a[u] * a[u] * (one - r[u])
            for u in range(n):
                d_z[u] = c[u] * (h_prev[u] - candidate[u]) * z[u] * (one - z[u])
            for u in range(n):
                grad_b_hn[u] += d_a[u]
            for u in range(n):
                c[u] *= z[u]  # the direct path h -> h'; the products add the rest
            delta[i, :n], delta[i, n : 2 * n] = d_r, d_z
        transposed_products(w, delta, prev, count, carry, grad_w)
    for i in range(count):
        grad_h0[rows[i]] = carry[i]


@numba.njit(parallel=True, **_GRU_FLAGS)
def forward(xw, h0, w_t, b_hn, out, gates):
    """All rows, blocks of ROWS on numba's threads."""
    over_row_blocks(forward_block, out.shape[0], (xw, h0, w_t, b_hn, out, gates))


@numba.njit(parallel=True, **_GRU_FLAGS)
def backward(grad_out, grad_last, out, gates, h0, w, grad_xw, grad_h0, grad_w_chunks, grad_b_hn_chunks):
    """All rows; block k adds its weight gradients to chunk k % chunks (zeroed on entry)."""
    over_gradient_chunks(backward_block, out.shape[0], (grad_out, grad_last, out, gates, h0, w, grad_xw, grad_h0),
                         (grad_w_chunks, grad_b_hn_chunks))


@numba.njit(**_GRU_FLAGS)
def forward_serial(xw, h0, w_t, b_hn, out, gates):
    """`forward` on the calling thread alone (no numba thread pool): the same bits."""
    over_row_blocks(forward_block, out.shape[0], (xw, h0, w_t, b_hn, out, gates))


@numba.njit(**_GRU_FLAGS)
def backward_serial(grad_out, grad_last, out, gates, h0, w, grad_xw, grad_h0, grad_w_chunks, grad_b_hn_chunks):
    """`backward` on the calling thread alone: the same chunks in the same order, the same bits."""
    over_gradient_chunks(backward_block, out.shape[0], (grad_out, grad_last, out, gates, h0, w, grad_xw, grad_h0),
                         (grad_w_chunks, grad_b_hn_chunks))
