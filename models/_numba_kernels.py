"""The CW-RNN recurrence and its BPTT as compiled loops (numba; CPU, float32 or float64).

Imported lazily by models/backends.py ("compiled" backend). Units are in the compiled
layout: module m owns units [starts[m], stops[m]) and reads only units in [reads[m], n)
(entries in that range it does not read are structural zeros of the masked weight:
they cost a multiply-add and change nothing).

Each batch row is an independent recurrence, so the time loop runs inside a loop over
blocks of ROWS rows, and blocks run on numba's threads. Per step only the firing
modules do work: a silent module's state is a copy. What makes the forward fast
(docs/performance.md has each step's measurement, at the TIMIT shape):
- in float32, tanh is a rational function that the compiler inlines (Eigen's float32
  tanh, at most 7 ulp from the true value, |tanh| <= 1, NaN stays NaN) instead of a
  call into libm per unit and step, which cost more than the products.
  float64 calls libm's tanh, so that float64 matches the reference to rounding;
- the rows of a block go through the inner loop together, one accumulator each, so
  that each weight element loaded serves every row, and two units at a time, so that
  each state element loaded serves both. The accumulators start from a zero of the
  array's dtype: from the literal 0.0 they are float64 and every float32 product is
  converted.
The inner loops run over slices indexed from 0: with `range(reads[m], n)` numba cannot
prove an index non-negative, keeps its negative-index wraparound and does not vectorise
(much slower). `fastmath` is limited to reassociation and fused multiply-add,
which lets the dot products vectorise; NaN and inf still propagate, so a diverging run
is still seen.
"""

import numba
import numpy as np
from numba import types
from numba.extending import overload

_FLAGS = dict(cache=True, nogil=True, fastmath={"reassoc", "contract"})

ROWS = 4  # batch rows per block: the unrolled accumulators below are written for four

# The backward gives each of at most CHUNKS chunks of blocks its own weight gradient,
# whatever the thread count, and the chunks are added in a fixed order. So the result
# does not depend on how many threads ran it (torch's own matmuls around the recurrence
# may still split their sums by thread count: see README).
CHUNKS = 8


@numba.njit(inline="always", **_FLAGS)
def rational_tanh(x):
    """Eigen's float32 tanh: a 13/6 rational function on [-7.9, 7.9] (beyond, tanh is
    1 to float32 precision). NaN passes through the clamp and the division."""
    limit = np.float32(7.90531110763549805)
    x = min(max(x, -limit), limit)
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


def activation(x):
    """tanh: rational_tanh in float32, libm's in float64 (chosen at compile time)."""
    return np.tanh(x)


@overload(activation, inline="always", fastmath=_FLAGS["fastmath"])
def _activation(x):
    if x == types.float32:
        return lambda x: rational_tanh(x)
    return lambda x: np.tanh(x)


@numba.njit(**_FLAGS)
def tanh_float32(x, out):
    """The float32 tanh of the kernels on an array (for its test)."""
    for i in range(x.shape[0]):
        out[i] = activation(x[i])


@numba.njit(**_FLAGS)
def previous_states(h0, out, t, rows, prev):
    """prev[i] = state of row rows[i] before step t (rows past the block's end stay zero)."""
    for i in range(rows.shape[0]):
        prev[i] = h0[rows[i]] if t == 0 else out[rows[i], t - 1]


@numba.njit(inline="always", **_FLAGS)
def fire_unit(xw, out, rows, t, u, a0, a1, a2, a3):
    """Unit u fires at step t: its new state in each row of the block, from the products
    W_u h(t-1) of rows 0..3 (those past the block's end are dropped)."""
    for i, acc in enumerate((a0, a1, a2, a3)):
        if i < rows.shape[0]:
            out[rows[i], t, u] = activation(xw[rows[i], t, u] + acc)


@numba.njit(**_FLAGS)
def forward_block(xw, h0, w, starts, stops, reads, periods, offset, out, rows):
    """The batch rows `rows` (at most ROWS): xw (B, T, n), h0 (B, n); their rows of out
    (B, T, n) written."""
    steps, n, count = xw.shape[1], xw.shape[2], rows.shape[0]
    prev = np.zeros((ROWS, n), dtype=xw.dtype)
    zero = prev[0, 0]
    for t in range(steps):
        previous_states(h0, out, t, rows, prev)
        for m in range(starts.shape[0]):
            lo, hi, r = starts[m], stops[m], reads[m]
            if (t - offset) % periods[m] != 0:  # silent: hold the state (numba's % is Python's)
                for i in range(count):
                    out[rows[i], t, lo:hi] = prev[i, lo:hi]
                continue
            p0 = prev[0, r:]
            if count == 1:  # B = 1 (the audio task): one row, one accumulator
                for u in range(lo, hi):
                    w_u, a0 = w[u, r:], zero
                    for v in range(w_u.shape[0]):
                        a0 += w_u[v] * p0[v]
                    out[rows[0], t, u] = activation(xw[rows[0], t, u] + a0)
                continue
            p1, p2, p3 = prev[1, r:], prev[2, r:], prev[3, r:]
            u = lo
            while u < hi:
                if u + 2 > hi:  # the module's last unit
                    w_u = w[u, r:]
                    a0 = a1 = a2 = a3 = zero
                    for v in range(w_u.shape[0]):
                        a0 += w_u[v] * p0[v]
                        a1 += w_u[v] * p1[v]
                        a2 += w_u[v] * p2[v]
                        a3 += w_u[v] * p3[v]
                    fire_unit(xw, out, rows, t, u, a0, a1, a2, a3)
                    u += 1
                    continue
                # two units x four rows: each weight and state element loaded serves 4 and 2 products
                w_u, w_x = w[u, r:], w[u + 1, r:]
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = zero
                for v in range(w_u.shape[0]):
                    a0 += w_u[v] * p0[v]
                    a1 += w_u[v] * p1[v]
                    a2 += w_u[v] * p2[v]
                    a3 += w_u[v] * p3[v]
                    b0 += w_x[v] * p0[v]
                    b1 += w_x[v] * p1[v]
                    b2 += w_x[v] * p2[v]
                    b3 += w_x[v] * p3[v]
                fire_unit(xw, out, rows, t, u, a0, a1, a2, a3)
                fire_unit(xw, out, rows, t, u + 1, b0, b1, b2, b3)
                u += 2


@numba.njit(**_FLAGS)
def backward_block(grad_out, grad_last, out, h0, w, starts, stops, reads, periods, offset, grad_xw, grad_h0,
                   grad_w, rows):
    """BPTT for the batch rows `rows` (at most ROWS). grad_w accumulates (comes in zeroed);
    their rows of grad_xw and grad_h0 are written. grad_xw may be grad_out itself: row t
    of grad_out is read before row t of grad_xw is written.

    carry is dL/dh(t) from the future (through h(t+1) and the final state). A silent unit
    passes it back unchanged; a firing unit turns it into delta = dL/dpre, which is the
    gradient of xw, feeds W's gradient and goes back through W to h(t-1). Both products
    take four units and the block's four rows in one pass over the weight rows, so that
    each carry element is loaded and stored once per four units and each state element
    once per four weight-gradient rows (faster than one row and one unit at a time at the
    TIMIT shape and at B = 64 T = 512 n = 256: docs/performance.md). One row
    (B = 1: the audio task, modules of a few units) keeps one unit at a time.
    """
    steps, n, count = out.shape[1], out.shape[2], rows.shape[0]
    carry = np.zeros((ROWS, n), dtype=out.dtype)  # rows past the block's end stay zero
    grad = np.zeros((ROWS, n), dtype=out.dtype)
    delta = np.zeros((ROWS, n), dtype=out.dtype)
    prev = np.zeros((ROWS, n), dtype=out.dtype)
    for i in range(count):
        carry[i] = grad_last[rows[i]]
    for t in range(steps - 1, -1, -1):
        previous_states(h0, out, t, rows, prev)
        for i in range(count):
            b = rows[i]
            for v in range(n):
                grad[i, v] = grad_out[b, t, v] + carry[i, v]
            # what reaches h(t-1): silent units pass theirs through, firing ones start from 0
            for m in range(starts.shape[0]):
                fires = (t - offset) % periods[m] == 0
                for u in range(starts[m], stops[m]):
                    carry[i, u] = 0.0 if fires else grad[i, u]
                    grad_xw[b, t, u] = 0.0  # silent units' xw is unused; firing ones are set below
        for m in range(starts.shape[0]):
            if (t - offset) % periods[m] != 0:
                continue
            lo, hi, r = starts[m], stops[m], reads[m]
            for i in range(count):
                for u in range(lo, hi):
                    h = out[rows[i], t, u]
                    delta[i, u] = grad[i, u] * (1 - h * h)
                    grad_xw[rows[i], t, u] = delta[i, u]
            p0, c0 = prev[0, r:], carry[0, r:]
            if count == 1:  # B = 1 (the audio task): a unit at a time, both products in one pass
                for u in range(lo, hi):
                    d0, w_u, grad_w_u = delta[0, u], w[u, r:], grad_w[u, r:]
                    for v in range(w_u.shape[0]):
                        grad_w_u[v] += d0 * p0[v]
                        c0[v] += w_u[v] * d0
                continue
            p1, p2, p3 = prev[1, r:], prev[2, r:], prev[3, r:]
            c1, c2, c3 = carry[1, r:], carry[2, r:], carry[3, r:]
            u = lo
            while u < hi:
                if u + 4 > hi:  # the module's last units, one at a time
                    d0, d1, d2, d3 = delta[0, u], delta[1, u], delta[2, u], delta[3, u]
                    w_u, grad_w_u = w[u, r:], grad_w[u, r:]
                    for v in range(w_u.shape[0]):
                        grad_w_u[v] += d0 * p0[v] + d1 * p1[v] + d2 * p2[v] + d3 * p3[v]
                        c0[v] += w_u[v] * d0
                        c1[v] += w_u[v] * d1
                        c2[v] += w_u[v] * d2
                        c3[v] += w_u[v] * d3
                    u += 1
                    continue
                # four units x four rows: each carry element loaded and stored once per four units
                wa, wb, wc, wd = w[u, r:], w[u + 1, r:], w[u + 2, r:], w[u + 3, r:]
                ga, gb, gc, gd = grad_w[u, r:], grad_w[u + 1, r:], grad_w[u + 2, r:], grad_w[u + 3, r:]
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
    for i in range(count):
        grad_h0[rows[i]] = carry[i]


def chunk_of(arrays, c):
    """(arrays[0][c], arrays[1][c], ...): chunk c of each array (compiled for tuples of one or two)."""
    return tuple(a[c] for a in arrays)


@overload(chunk_of, inline="always")
def _chunk_of(arrays, c):
    if len(arrays) == 1:
        return lambda arrays, c: (arrays[0][c],)
    if len(arrays) == 2:
        return lambda arrays, c: (arrays[0][c], arrays[1][c])


# The drivers' loops over blocks of ROWS batch rows (here and in models/_numba_gru.py and
# _numba_plstm.py). Inlined into each driver before numba compiles it: in a parallel driver
# the prange becomes the driver's own parallel loop, in a serial one it is a range; and
# `block` (a module's global) becomes a direct call. Taken as a closure or a first-class
# function instead, `block` would make numba's on-disk cache miss in every new process (its
# key pickles the dispatcher, with a uuid of the process).


@numba.njit(inline="always", **_FLAGS)
def over_row_blocks(block, batch, args):
    """block(*args, rows) for the rows of each block of ROWS of the batch's rows."""
    for k in numba.prange((batch + ROWS - 1) // ROWS):
        block(*args, np.arange(k * ROWS, min(batch, (k + 1) * ROWS)))


@numba.njit(inline="always", **_FLAGS)
def over_gradient_chunks(block, batch, args, chunked):
    """block(*args, *chunk c of each array in `chunked`, rows) for c in range(chunks), the
    blocks c, c + chunks, ... of ROWS rows in order: each chunk's gradient sums in a fixed
    order, whatever the threads."""
    blocks = (batch + ROWS - 1) // ROWS
    chunks = chunked[0].shape[0]
    for c in numba.prange(chunks):
        for k in range(c, blocks, chunks):
            block(*args, *chunk_of(chunked, c), np.arange(k * ROWS, min(batch, (k + 1) * ROWS)))


@numba.njit(parallel=True, **_FLAGS)
def forward(xw, h0, w, starts, stops, reads, periods, offset, out):
    """All rows, blocks of ROWS on numba's threads. xw (B, T, n), h0 (B, n), out (B, T, n) written."""
    over_row_blocks(forward_block, xw.shape[0], (xw, h0, w, starts, stops, reads, periods, offset, out))


@numba.njit(parallel=True, **_FLAGS)
def backward(grad_out, grad_last, out, h0, w, starts, stops, reads, periods, offset, grad_xw, grad_h0,
             grad_w_chunks):
    """All rows; block k adds its weight gradient to grad_w_chunks[k % chunks] (zeroed on entry)."""
    over_gradient_chunks(backward_block, out.shape[0], (grad_out, grad_last, out, h0, w, starts, stops, reads,
                                                        periods, offset, grad_xw, grad_h0), (grad_w_chunks,))


@numba.njit(**_FLAGS)
def forward_serial(xw, h0, w, starts, stops, reads, periods, offset, out):
    """`forward` on the calling thread alone, without numba's thread pool (whose idle
    OpenMP workers spin against torch's own threads). Blocks are independent: the same bits."""
    over_row_blocks(forward_block, xw.shape[0], (xw, h0, w, starts, stops, reads, periods, offset, out))


@numba.njit(**_FLAGS)
def backward_serial(grad_out, grad_last, out, h0, w, starts, stops, reads, periods, offset, grad_xw, grad_h0,
                    grad_w_chunks):
    """`backward` on the calling thread alone: the same chunks in the same order, the same bits."""
    over_gradient_chunks(backward_block, out.shape[0], (grad_out, grad_last, out, h0, w, starts, stops, reads,
                                                        periods, offset, grad_xw, grad_h0), (grad_w_chunks,))
