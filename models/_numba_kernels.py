"""The CW-RNN recurrence and its BPTT as compiled loops (numba; CPU, float32 or float64).

Imported lazily by models/backends.py ("compiled" backend). Units are in the compiled
layout: module m owns units [starts[m], stops[m]) and reads only units in [reads[m], n)
(entries in that range it does not read are structural zeros of the masked weight:
they cost a multiply-add and change nothing).

Each batch row is an independent recurrence, so the time loop runs inside a loop over
blocks of rows, and blocks run on numba's threads. Within a block, each weight row is
loaded once per step and used for every row of the block: with one row at a time, a
weight matrix larger than the cache is streamed from memory once per row and step
(2x slower at n = 512, measured). Per step only the firing modules do work: a silent
module's state is a copy.

The inner loops run over slices indexed from 0: with `range(reads[m], n)` numba cannot
prove an index non-negative, keeps its negative-index wraparound and does not vectorise
(2.5x slower, measured). `fastmath` is limited to reassociation and fused multiply-add,
which lets the dot products vectorise; NaN and inf still propagate, so a diverging run
is still seen.
"""

import numba
import numpy as np

_FLAGS = dict(cache=True, nogil=True, fastmath={"reassoc", "contract"})

ROWS = 4  # batch rows per block: 4 state rows of a few KB stay in L1 next to a weight row

# The backward splits the rows into this many chunks whatever the thread count; each
# chunk sums its own weight gradient and the chunks are added in a fixed order. So the
# result does not depend on how many threads ran it: training stays bit-reproducible
# across machines.
CHUNKS = 8


@numba.njit(**_FLAGS)
def forward_block(xw, h0, w, starts, stops, reads, periods, offset, out, rows):
    """The batch rows `rows`: xw (B, T, n), h0 (B, n); their rows of out (B, T, n) written."""
    steps = xw.shape[1]
    for t in range(steps):
        for m in range(starts.shape[0]):
            lo, hi, r = starts[m], stops[m], reads[m]
            if (t - offset) % periods[m] != 0:  # silent: hold the state (numba's % is Python's)
                for b in rows:
                    out[b, t, lo:hi] = h0[b, lo:hi] if t == 0 else out[b, t - 1, lo:hi]
                continue
            for u in range(lo, hi):
                w_u = w[u, r:]
                for b in rows:
                    read = h0[b, r:] if t == 0 else out[b, t - 1, r:]
                    acc = xw[b, t, u]
                    for v in range(read.shape[0]):
                        acc += w_u[v] * read[v]
                    out[b, t, u] = np.tanh(acc)


@numba.njit(**_FLAGS)
def backward_block(grad_out, grad_last, out, h0, w, starts, stops, reads, periods, offset, grad_xw, grad_h0,
                   grad_w, rows):
    """BPTT for the batch rows `rows`. grad_w accumulates (comes in zeroed); their rows of
    grad_xw and grad_h0 are written. grad_xw may be grad_out itself: row t of grad_out is
    read before row t of grad_xw is written.

    carry is dL/dh(t) from the future (through h(t+1) and the final state). A silent unit
    passes it back unchanged; a firing unit turns it into delta = dL/dpre, which is the
    gradient of xw, feeds W's gradient and goes back through W to h(t-1).
    """
    steps, n = out.shape[1], out.shape[2]
    carry = np.empty((rows.shape[0], n), dtype=out.dtype)
    grad = np.empty((rows.shape[0], n), dtype=out.dtype)
    delta = np.empty(rows.shape[0], dtype=out.dtype)
    for i in range(rows.shape[0]):
        carry[i] = grad_last[rows[i]]
    for t in range(steps - 1, -1, -1):
        for i in range(rows.shape[0]):
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
            r = reads[m]
            for u in range(starts[m], stops[m]):
                w_u, grad_w_u = w[u, r:], grad_w[u, r:]
                for i in range(rows.shape[0]):
                    h = out[rows[i], t, u]
                    delta[i] = grad[i, u] * (1 - h * h)
                    grad_xw[rows[i], t, u] = delta[i]
                for i in range(rows.shape[0]):
                    read = h0[rows[i], r:] if t == 0 else out[rows[i], t - 1, r:]
                    carry_read, d = carry[i, r:], delta[i]
                    for v in range(read.shape[0]):
                        grad_w_u[v] += d * read[v]
                        carry_read[v] += w_u[v] * d
    for i in range(rows.shape[0]):
        grad_h0[rows[i]] = carry[i]


@numba.njit(parallel=True, **_FLAGS)
def forward(xw, h0, w, starts, stops, reads, periods, offset, out):
    """All rows, blocks of ROWS on numba's threads. xw (B, T, n), h0 (B, n), out (B, T, n) written."""
    batch = xw.shape[0]
    for block in numba.prange((batch + ROWS - 1) // ROWS):
        rows = np.arange(block * ROWS, min(batch, (block + 1) * ROWS))
        forward_block(xw, h0, w, starts, stops, reads, periods, offset, out, rows)


@numba.njit(parallel=True, **_FLAGS)
def backward(grad_out, grad_last, out, h0, w, starts, stops, reads, periods, offset, grad_xw, grad_h0,
             grad_w_chunks):
    """All rows; row b adds its weight gradient to grad_w_chunks[b % chunks] (zeroed on entry)."""
    batch = out.shape[0]
    chunks = grad_w_chunks.shape[0]
    for c in numba.prange(chunks):
        mine = np.arange(c, batch, chunks)
        for at in range(0, mine.shape[0], ROWS):
            backward_block(grad_out, grad_last, out, h0, w, starts, stops, reads, periods, offset, grad_xw,
                           grad_h0, grad_w_chunks[c], mine[at : at + ROWS])
