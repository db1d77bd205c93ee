"""The Phased LSTM recurrence and its BPTT as compiled loops (numba; CPU, float32 or float64).

Imported lazily by models/phased_lstm.py (the Phased LSTM's "compiled" implementation),
through models.backends.numba_kernels, which picks the serial or the threaded drivers below
as it does for the CW-RNN and GRU kernels. Gates in torch.nn.LSTM's order i, f, g, o (rows
of W_hh); torch computes xw = x W_ih^T + b for every step and the time gate k (T, n) for
every step (it depends on t and the learnable period, shift and open ratio only, not on the
state: its gradient goes back through torch). The loops do, per step,

    i, f, g, o = σ, σ, tanh, σ of xw_t + W_hh h
    c~ = f c + i g        h~ = o tanh(c~)
    c' = k c~ + (1 − k) c     h' = k h~ + (1 − k) h

and backwards, with gh = dL/dh' (from the output and the future) and gc = dL/dc',

    dk      += gh (h~ − h) + gc (c~ − c)          (summed over the batch rows)
    dc~      = gc k + gh k o (1 − tanh²(c~))
    d_o      = gh k tanh(c~) o (1 − o)            d_i = dc~ g i (1 − i)
    d_f      = dc~ c f (1 − f)                    d_g = dc~ i (1 − g²)
    dL/dc    = gc (1 − k) + dc~ f
    dL/dh    = gh (1 − k) + W_hh^T (d_i, d_f, d_g, d_o),   dL/dW_hh += (d_i, d_f, d_g, d_o) h^T

The forward keeps i, f, g, o, c~ and tanh(c~) of every step (6n floats a step) and the
cell states, for the backward. The products W_hh h and W_hh^T d, the float32 sigmoid and
tanh, the blocks of ROWS batch rows on numba's threads and the gradient chunks added in a
fixed order (results do not depend on the thread count) are the GRU's
(models/_numba_gru.py); the gradient of k is summed per chunk like the weights'.

numba's on-disk cache keys on this file alone: after editing the loops this file inlines
from models/_numba_gru.py or models/_numba_kernels.py, delete models/__pycache__/_numba_plstm*
so that they are compiled again.
"""

import numba
import numpy as np

from models._numba_gru import _GRU_FLAGS, recurrent_products, sigmoid, transposed_products
from models._numba_kernels import ROWS, activation, over_gradient_chunks, over_row_blocks, previous_states


@numba.njit(**_GRU_FLAGS)
def forward_block(xw, h0, c0, k, w_t, out, cells, gates, rows):
    """The batch rows `rows` (at most ROWS): xw (B, T, 4n), h0 and c0 (B, n), k (T, n),
    w_t = W_hh^T (n, 4n); their rows of out and cells (B, T, n) and gates (B, T, 6n:
    i, f, g, o, c~, tanh(c~)) written."""
    steps, n, count = out.shape[1], out.shape[2], rows.shape[0]
    prev = np.zeros((ROWS, n), dtype=out.dtype)  # rows past the block's end stay zero
    prev_c = np.zeros((ROWS, n), dtype=out.dtype)
    gh = np.zeros((ROWS, 4 * n), dtype=out.dtype)
    one = np.ones(1, dtype=out.dtype)[0]  # with the literal 1 float32 would be promoted to float64
    for t in range(steps):
        previous_states(h0, out, t, rows, prev)
        previous_states(c0, cells, t, rows, prev_c)
        recurrent_products(w_t, prev, count, gh)
        k_t = k[t]
        for r in range(count):
            # slices indexed from 0 and one loop per quantity: what lets LLVM vectorise (_numba_gru)
            x = xw[rows[r], t]
            x_i, x_f, x_g, x_o = x[:n], x[n : 2 * n], x[2 * n : 3 * n], x[3 * n :]
            h_i, h_f, h_g, h_o = gh[r, :n], gh[r, n : 2 * n], gh[r, 2 * n : 3 * n], gh[r, 3 * n :]
            s = gates[rows[r], t]
            i, f, g, o = s[:n], s[n : 2 * n], s[2 * n : 3 * n], s[3 * n : 4 * n]
            c_tilde, tanh_c = s[4 * n : 5 * n], s[5 * n :]
            h_prev, c_prev, h, c = prev[r], prev_c[r], out[rows[r], t], cells[rows[r], t]
            for u in range(n):
                i[u] = sigmoid(x_i[u] + h_i[u])
            for u in range(n):
                f[u] = sigmoid(x_f[u] + h_f[u])
            for u in range(n):
                g[u] = activation(x_g[u] + h_g[u])
            for u in range(n):
                o[u] = sigmoid(x_o[u] + h_o[u])
            for u in range(n):
                c_tilde[u] = f[u] * c_prev[u] + i[u] * g[u]
            for u in range(n):
                tanh_c[u] = activation(c_tilde[u])
            for u in range(n):
                c[u] = k_t[u] * c_tilde[u] + (one - k_t[u]) * c_prev[u]
            for u in range(n):
                h[u] = k_t[u] * (o[u] * tanh_c[u]) + (one - k_t[u]) * h_prev[u]


@numba.njit(**_GRU_FLAGS)
def backward_block(grad_out, grad_h_last, grad_c_last, out, cells, gates, h0, c0, k, w, grad_xw, grad_h0,
                   grad_c0, grad_w, grad_k, rows):
    """BPTT for the batch rows `rows` (at most ROWS). grad_w (4n, n) and grad_k (T, n)
    accumulate (they come in zeroed); their rows of grad_xw (B, T, 4n), grad_h0 and grad_c0
    are written. carry and carry_c are dL/dh(t) and dL/dc(t) from the future."""
    steps, n, count = out.shape[1], out.shape[2], rows.shape[0]
    carry = np.zeros((ROWS, n), dtype=out.dtype)  # rows past the block's end stay zero
    carry_c = np.zeros((ROWS, n), dtype=out.dtype)
    prev = np.zeros((ROWS, n), dtype=out.dtype)
    prev_c = np.zeros((ROWS, n), dtype=out.dtype)
    delta = np.zeros((ROWS, 4 * n), dtype=out.dtype)  # dL/d(W_hh h): i, f, g, o
    d_tilde = np.zeros(n, dtype=out.dtype)  # dL/dc~ of one row
    one = np.ones(1, dtype=out.dtype)[0]
    for r in range(count):
        carry[r] = grad_h_last[rows[r]]
        carry_c[r] = grad_c_last[rows[r]]
    for t in range(steps - 1, -1, -1):
        previous_states(h0, out, t, rows, prev)
        previous_states(c0, cells, t, rows, prev_c)
        k_t, g_k = k[t], grad_k[t]
        for r in range(count):
            s = gates[rows[r], t]
            i, f, g, o = s[:n], s[n : 2 * n], s[2 * n : 3 * n], s[3 * n : 4 * n]
            c_tilde, tanh_c = s[4 * n : 5 * n], s[5 * n :]
            d = delta[r]
            d_i, d_f, d_g, d_o = d[:n], d[n : 2 * n], d[2 * n : 3 * n], d[3 * n :]
            h_prev, c_prev, gh, gc = prev[r], prev_c[r], carry[r], carry_c[r]
            grad_h = grad_out[rows[r], t]
            for u in range(n):
                gh[u] += grad_h[u]  # now dL/dh(t)
            for u in range(n):
                g_k[u] += gh[u] * (o[u] * tanh_c[u] - h_prev[u]) + gc[u] * (c_tilde[u] - c_prev[u])
            for u in range(n):
                d_o[u] = gh[u] * k_t[u] * tanh_c[u] * o[u] * (one - o[u])
            for u in range(n):
                d_tilde[u] = gc[u] * k_t[u] + gh[u] * k_t[u] * o[u] * (one - tanh_c[u] * tanh_c[u])
            for u in range(n):
                d_i[u] = d_tilde[u] * g[u] * i[u] * (one - i[u])
            for u in range(n):
                d_f[u] = d_tilde[u] * c_prev[u] * f[u] * (one - f[u])
            for u in range(n):
                d_g[u] = d_tilde[u] * i[u] * (one - g[u] * g[u])
            for u in range(n):
                gc[u] = gc[u] * (one - k_t[u]) + d_tilde[u] * f[u]  # now dL/dc(t-1)
            for u in range(n):
                gh[u] *= one - k_t[u]  # the direct path h -> h'; the products add the rest
            grad_xw[rows[r], t] = d
        transposed_products(w, delta, prev, count, carry, grad_w)
    for r in range(count):
        grad_h0[rows[r]] = carry[r]
        grad_c0[rows[r]] = carry_c[r]


@numba.njit(parallel=True, **_GRU_FLAGS)
def forward(xw, h0, c0, k, w_t, out, cells, gates):
    """All rows, blocks of ROWS on numba's threads."""
    over_row_blocks(forward_block, out.shape[0], (xw, h0, c0, k, w_t, out, cells, gates))


@numba.njit(parallel=True, **_GRU_FLAGS)
def backward(grad_out, grad_h_last, grad_c_last, out, cells, gates, h0, c0, k, w, grad_xw, grad_h0, grad_c0,
             grad_w_chunks, grad_k_chunks):
    """All rows; block b adds its weight and time-gate gradients to chunk b % chunks (zeroed on entry)."""
    args = grad_out, grad_h_last, grad_c_last, out, cells, gates, h0, c0, k, w, grad_xw, grad_h0, grad_c0
    over_gradient_chunks(backward_block, out.shape[0], args, (grad_w_chunks, grad_k_chunks))


@numba.njit(**_GRU_FLAGS)
def forward_serial(xw, h0, c0, k, w_t, out, cells, gates):
    """`forward` on the calling thread alone (no numba thread pool): the same bits."""
    over_row_blocks(forward_block, out.shape[0], (xw, h0, c0, k, w_t, out, cells, gates))


@numba.njit(**_GRU_FLAGS)
def backward_serial(grad_out, grad_h_last, grad_c_last, out, cells, gates, h0, c0, k, w, grad_xw, grad_h0,
                    grad_c0, grad_w_chunks, grad_k_chunks):
    """`backward` on the calling thread alone: the same chunks in the same order, the same bits."""
    args = grad_out, grad_h_last, grad_c_last, out, cells, gates, h0, c0, k, w, grad_xw, grad_h0, grad_c0
    over_gradient_chunks(backward_block, out.shape[0], args, (grad_w_chunks, grad_k_chunks))
