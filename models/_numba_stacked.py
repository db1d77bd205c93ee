"""The stacked recurrences of models/stacked.py as compiled loops (numba; CPU, float32 or
float64): forward and a hand-written BPTT of the tanh RNN / CW-RNN, the LSTM and the GRU,
each member with its own weights. Imported lazily by models/stacked.py ("compiled").

Why: stacked in torch, every step of every sequence is a handful of small ops whose
dispatch and autograd bookkeeping, not their arithmetic, is the cost; here a step is a few
hundred multiply-adds with no overhead, and a CW-RNN step computes only its firing units.

Shapes: M members, B batch rows, T steps, n units. xw (M, B, T, gates * n) is the input
projection with the biases that add (models/stacked.py says which); w (M, gates * n, n) the
recurrent weights (row r: the weights into gate-unit r); h0 (M, B, n). Serial loops in a
fixed order, so a result does not depend on anything but its inputs (verify re-trains a
stacked group bitwise). The equations are those of models/stacked.py's torch loops, which
the tests hold these to (float64, to rounding).

numba's on-disk cache keys on this file alone: after editing the tanh of
models/_numba_kernels.py, which these loops inline, delete models/__pycache__/_numba_stacked*.
"""

import numba
import numpy as np

from models._numba_gru import sigmoid as _sigmoid  # (1 + tanh(x / 2)) / 2 in float32, as the single-run kernels
from models._numba_kernels import activation

# NumPy's error model: no zero-divisor branch, so LLVM vectorises the gate loops (as in
# models/_numba_gru.py); reassociation lets it vectorise the dot products
_FLAGS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})


@numba.njit(**_FLAGS)
def elman_forward(xw, h0, w, fires, out):
    """h' = tanh(xw_t + W h) for the units that fire at t (fires (T, n)); the others keep h."""
    members, batch, steps, n = out.shape
    pre = np.zeros(n, dtype=out.dtype)
    for m in range(members):
        wm = w[m]
        for b in range(batch):
            prev = h0[m, b]
            for t in range(steps):
                now, x, fire = out[m, b, t], xw[m, b, t], fires[t]
                for u in range(n):
                    acc = x[u]
                    if fire[u]:
                        wu = wm[u]
                        for v in range(n):
                            acc += wu[v] * prev[v]
                    pre[u] = acc
                for u in range(n):
                    now[u] = activation(pre[u]) if fire[u] else prev[u]
                prev = now


@numba.njit(**_FLAGS)
def elman_backward(grad_out, h0, w, fires, out, grad_xw, grad_h0, grad_w):
    """grad_xw, grad_h0 written; grad_w (M, n, n) summed into (zeros on entry)."""
    members, batch, steps, n = out.shape
    carry = np.zeros(n, dtype=out.dtype)
    new = np.zeros(n, dtype=out.dtype)
    for m in range(members):
        wm, gw = w[m], grad_w[m]
        for b in range(batch):
            carry[:] = 0
            for t in range(steps - 1, -1, -1):
                prev = out[m, b, t - 1] if t > 0 else h0[m, b]
                now, g_out, g_xw, fire = out[m, b, t], grad_out[m, b, t], grad_xw[m, b, t], fires[t]
                new[:] = 0
                for u in range(n):
                    g = g_out[u] + carry[u]
                    if fire[u]:
                        d = g * (1 - now[u] * now[u])
                        g_xw[u] = d
                        wu, gwu = wm[u], gw[u]
                        for v in range(n):
                            new[v] += wu[v] * d
                            gwu[v] += d * prev[v]
                    else:
                        g_xw[u] = 0
                        new[u] += g
                carry[:] = new
            grad_h0[m, b] = carry


@numba.njit(**_FLAGS)
def lstm_forward(xw, h0, c0, w, out, cells, gates):
    """nn.LSTM, gates i, f, g, o; gates (M, B, T, 4n) keeps the activated gates, cells the c_t."""
    members, batch, steps, n = out.shape
    for m in range(members):
        wm = w[m]
        for b in range(batch):
            h, c = h0[m, b], c0[m, b]
            for t in range(steps):
                x, gt = xw[m, b, t], gates[m, b, t]
                for r in range(4 * n):
                    acc = x[r]
                    wr = wm[r]
                    for v in range(n):
                        acc += wr[v] * h[v]
                    gt[r] = acc
                now, cell = out[m, b, t], cells[m, b, t]
                # one short loop per gate, on slices from 0: LLVM vectorises them
                ig, fg, gg, og = gt[:n], gt[n:2 * n], gt[2 * n:3 * n], gt[3 * n:]
                for u in range(n):
                    ig[u] = _sigmoid(ig[u])
                for u in range(n):
                    fg[u] = _sigmoid(fg[u])
                for u in range(n):
                    gg[u] = activation(gg[u])
                for u in range(n):
                    og[u] = _sigmoid(og[u])
                for u in range(n):
                    cell[u] = fg[u] * c[u] + ig[u] * gg[u]
                for u in range(n):
                    now[u] = og[u] * activation(cell[u])
                h, c = now, cell


@numba.njit(**_FLAGS)
def lstm_backward(grad_out, h0, c0, w, out, cells, gates, grad_xw, grad_h0, grad_c0, grad_w):
    members, batch, steps, n = out.shape
    dh = np.zeros(n, dtype=out.dtype)
    dc = np.zeros(n, dtype=out.dtype)
    for m in range(members):
        wm, gw = w[m], grad_w[m]
        for b in range(batch):
            dh[:] = 0
            dc[:] = 0
            for t in range(steps - 1, -1, -1):
                h_prev = out[m, b, t - 1] if t > 0 else h0[m, b]
                c_prev = cells[m, b, t - 1] if t > 0 else c0[m, b]
                gt, cell, g_out, d = gates[m, b, t], cells[m, b, t], grad_out[m, b, t], grad_xw[m, b, t]
                for u in range(n):
                    i, f, g, o = gt[u], gt[n + u], gt[2 * n + u], gt[3 * n + u]
                    tc = activation(cell[u])
                    dh_u = g_out[u] + dh[u]
                    dc_u = dc[u] + dh_u * o * (1 - tc * tc)
                    d[u] = dc_u * g * i * (1 - i)
                    d[n + u] = dc_u * c_prev[u] * f * (1 - f)
                    d[2 * n + u] = dc_u * i * (1 - g * g)
                    d[3 * n + u] = dh_u * tc * o * (1 - o)
                    dc[u] = dc_u * f
                dh[:] = 0
                for r in range(4 * n):
                    d_r = d[r]
                    wr, gwr = wm[r], gw[r]
                    for v in range(n):
                        dh[v] += wr[v] * d_r
                        gwr[v] += d_r * h_prev[v]
            grad_h0[m, b] = dh
            grad_c0[m, b] = dc


@numba.njit(**_FLAGS)
def gru_forward(xw, h0, w, b_hh, out, gates):
    """nn.GRU, gates r, z, n: xw holds b_ih; gates (M, B, T, 4n) keeps r, z, n and a = W_hn h + b_hn."""
    members, batch, steps, n = out.shape
    gh = np.zeros(3 * n, dtype=out.dtype)
    for m in range(members):
        wm, bm = w[m], b_hh[m]
        for b in range(batch):
            h = h0[m, b]
            for t in range(steps):
                for r in range(3 * n):
                    acc = bm[r]
                    wr = wm[r]
                    for v in range(n):
                        acc += wr[v] * h[v]
                    gh[r] = acc
                x, gt, now = xw[m, b, t], gates[m, b, t], out[m, b, t]
                rg, zg, cg, ag = gt[:n], gt[n:2 * n], gt[2 * n:3 * n], gt[3 * n:]
                xr, xz, xn = x[:n], x[n:2 * n], x[2 * n:]
                hr, hz, hn = gh[:n], gh[n:2 * n], gh[2 * n:]
                for u in range(n):
                    rg[u] = _sigmoid(xr[u] + hr[u])
                for u in range(n):
                    zg[u] = _sigmoid(xz[u] + hz[u])
                for u in range(n):
                    ag[u] = hn[u]
                for u in range(n):
                    cg[u] = activation(xn[u] + rg[u] * ag[u])
                for u in range(n):
                    now[u] = cg[u] + zg[u] * (h[u] - cg[u])
                h = now


@numba.njit(**_FLAGS)
def gru_backward(grad_out, h0, w, out, gates, grad_xw, grad_h0, grad_w, grad_b_hh):
    members, batch, steps, n = out.shape
    dh = np.zeros(n, dtype=out.dtype)
    dgh = np.zeros(3 * n, dtype=out.dtype)
    for m in range(members):
        wm, gw, gb = w[m], grad_w[m], grad_b_hh[m]
        for b in range(batch):
            dh[:] = 0
            for t in range(steps - 1, -1, -1):
                h_prev = out[m, b, t - 1] if t > 0 else h0[m, b]
                gt, g_out, d = gates[m, b, t], grad_out[m, b, t], grad_xw[m, b, t]
                for u in range(n):
                    rr, z, cand, a = gt[u], gt[n + u], gt[2 * n + u], gt[3 * n + u]
                    g = g_out[u] + dh[u]
                    dn = g * (1 - z) * (1 - cand * cand)
                    dgh[2 * n + u] = dn * rr
                    dr = dn * a * rr * (1 - rr)
                    dz = g * (h_prev[u] - cand) * z * (1 - z)
                    d[u], d[n + u], d[2 * n + u] = dr, dz, dn
                    dgh[u], dgh[n + u] = dr, dz
                    dh[u] = g * z
                for r in range(3 * n):
                    d_r = dgh[r]
                    gb[r] += d_r
                    wr, gwr = wm[r], gw[r]
                    for v in range(n):
                        dh[v] += wr[v] * d_r
                        gwr[v] += d_r * h_prev[v]
            grad_h0[m, b] = dh
