"""Fast implementations of the CW-RNN recurrence, and which one `auto` runs.

Every backend computes exactly the function of `reference_recurrence` in
models/clockwork.py (same outputs, same gradients) with the signature

    recurrence(xw, h0, weight_hh, fires, module) -> (outputs (B, T, n), h_last (B, n))

xw (B, T, n) is x @ W_I^T + b for every step, h0 (B, n) the initial state, weight_hh
(n, n) the recurrent weights with the structural zeros already applied, fires (T, n) the
firing schedule and `module` the ClockworkRNN (module_sizes, periods, order, offset). The
fast backends read the schedule from `module`; `fires` is the same schedule as a table.

Two facts make them fast (docs/cwrnn.md, "The recurrence" and "Who reads whom"):
- a silent module's state is a copy, so nothing needs computing at silent steps;
- under the paper's wiring modules never read modules below them in the connection order
  (by default: faster ones), so the modules of one clock period can be computed as one RNN
  over that period's firing steps only, once the modules they read have been computed.
  The reversed wiring (faster ones only) has such an order too, fastest first; the full
  wiring has none (every period reads every other), and "modular" computes it step by step.

Backends:
- "modular": one library RNN call per clock period (cuDNN on GPU), slowest first, each
  over its own firing steps only, on input xw + (what the groups it reads contribute).
  A slower group's contribution W_q,r h_r is one matmul over r's own (few) states, then
  repeated onto q's firing steps: no tensor of size (read units x steps) is ever built,
  so training memory stays at or below the reference's. Gathers only for periods that
  do not divide each other. Device-agnostic torch code.
- "compiled": the whole recurrence and a hand-written BPTT as two loops compiled with
  numba (CPU, float32/float64; batch rows on numba's threads), visiting only the firing
  modules at each step. At small sizes, where eager torch is all per-op overhead, it is
  the only way to beat oneDNN's fused LSTM kernel; the loops are in
  models/_numba_kernels.py. The library rnn (models/library.py) runs on it too: an
  Elman RNN is a one-module CW-RNN of period 1.

Both permute the units once so that what they slice is contiguous (modular: ascending
period; compiled: ascending connection order). For every named schedule that layout is
the module order already, and nothing is permuted.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import types
from dataclasses import dataclass

import numpy as np
import torch

from models.clockwork_rules import module_reads, reference_recurrence

# ---------------------------------------------------------------------------------------
# Layouts


def unit_permutation(module_sizes, module_order) -> tuple[int, ...] | None:
    """Units of the modules in `module_order`; None when that is the identity."""
    starts = [sum(module_sizes[:i]) for i in range(len(module_sizes))]
    perm = [u for i in module_order for u in range(starts[i], starts[i] + module_sizes[i])]
    return None if perm == list(range(len(perm))) else tuple(perm)


def permute_in(perm, xw, h0, weight_hh):
    if perm is None:
        return xw, h0, weight_hh
    index = index_tensor(perm, xw.device)
    return xw.index_select(2, index), h0.index_select(1, index), weight_hh[index][:, index]


def permute_out(perm, outputs, h_last):
    if perm is None:
        return outputs, h_last
    inverse = [0] * len(perm)
    for position, unit in enumerate(perm):
        inverse[unit] = position
    index = index_tensor(tuple(inverse), outputs.device)
    return outputs.index_select(2, index), h_last.index_select(1, index)


@functools.lru_cache(maxsize=1024)
def index_tensor(rows: tuple[int, ...], device) -> torch.Tensor:
    """A constant index, made (and copied to the GPU) once per plan and device."""
    return torch.tensor(rows, dtype=torch.long, device=device)


def module_key(module):
    return (tuple(module.module_sizes), tuple(module.periods), tuple(getattr(module, "order", module.periods)),
            module.offset, getattr(module, "wiring", "paper"))


# ---------------------------------------------------------------------------------------
# "modular": one library RNN call per clock period


@dataclass(frozen=True)
class Read:
    """How group q reads group r: r's state at step s - 1 for each firing step s of q.

    r's states are kept compact: C_r = [h0_r, h_r after firing 1, after firing 2, ...],
    and q's firing j needs row idx_j of it. When r's period is a multiple c of q's,
    idx_j = (j + start) // c: rows repeated c times, read from `start` (a repeat, whose
    backward is a sum); otherwise the rows are listed in `rows` (a gather).
    """

    source: int  # the group read
    start: int
    repeat: int
    rows: tuple[int, ...] | None


@dataclass(frozen=True)
class Group:
    """The units of one clock period: [start, stop) in the ascending-period layout."""

    start: int
    stop: int
    period: int
    first: int  # first firing step, in [0, period)
    steps: int  # number of firing steps in the sequence
    reads: tuple[Read, ...]  # the other groups it reads (computed before it)


@dataclass(frozen=True)
class ModularPlan:
    perm: tuple[int, ...] | None
    groups: tuple[Group, ...]  # in layout order (ascending period)
    run_order: tuple[int, ...] | None  # groups in an order where each comes after those it reads;
    # None if the groups read each other in a cycle (only possible with a custom `order`)


def firing(period, offset, steps):
    first = offset % period  # Python's % is never negative: negative offsets work too
    return first, 0 if first >= steps else (steps - first + period - 1) // period


def make_read(source, q_period, q_first, q_steps, r_period, r_first) -> Read:
    # number of r's firings at steps <= s - 1, for q's firing steps s = q_first + j * q_period
    rows = tuple((q_first + j * q_period - 1 - r_first) // r_period + 1 for j in range(q_steps))
    if r_period % q_period == 0:
        repeat = r_period // q_period
        start = (q_first - 1 - r_first) // q_period + repeat
        assert rows == tuple((j + start) // repeat for j in range(q_steps))  # the identity in Read's doc
        return Read(source, start, repeat, None)
    return Read(source, 0, 1, rows)


@functools.lru_cache(maxsize=256)
def modular_plan(module_sizes, periods, order, offset, wiring, steps) -> ModularPlan:
    g = len(periods)
    by_period = sorted(range(g), key=lambda i: periods[i])  # stable: ties keep module order
    reads = module_reads(order, wiring)

    members = {}  # period -> modules
    for i in by_period:
        members.setdefault(periods[i], []).append(i)
    distinct = list(members)
    groups, at = [], 0
    for period in distinct:
        size = sum(module_sizes[i] for i in members[period])
        first, count = firing(period, offset, steps)
        read = tuple(
            make_read(r, period, first, count, other, firing(other, offset, steps)[0])
            for r, other in enumerate(distinct)
            if other != period and any(reads[i][j] for i in members[period] for j in members[other])
        )
        groups.append(Group(at, at + size, period, first, count, read))
        at += size

    # Kahn's algorithm, taking the slowest ready group first (the paper's order)
    done, run_order = set(), []
    while len(run_order) < len(groups):
        ready = [q for q in range(len(groups))
                 if q not in done and all(r.source in done for r in groups[q].reads)]
        if not ready:
            return ModularPlan(unit_permutation(module_sizes, by_period), tuple(groups), None)
        run_order.append(ready[-1])
        done.add(ready[-1])
    return ModularPlan(unit_permutation(module_sizes, by_period), tuple(groups), tuple(run_order))


def repeat_rows(compact, repeat, start, length):
    """rows (start + i) // repeat of `compact` for i < length: a repeat, not a gather."""
    if repeat == 1:
        return compact[start : start + length]
    expanded = compact.unsqueeze(1).expand(compact.shape[0], repeat, *compact.shape[1:])
    return expanded.reshape(-1, *compact.shape[1:])[start : start + length]


def modular_recurrence(xw, h0, weight_hh, fires, module):
    batch, steps, n = xw.shape
    plan = modular_plan(*module_key(module), steps)
    # Step by step where there is no order to compute the periods in, or where nothing
    # fires at all (a sequence shorter than every module's first firing): the reference
    # is as cheap there, and it gives the weights a zero gradient rather than none.
    if plan.run_order is None or all(grp.steps == 0 for grp in plan.groups):
        return reference_recurrence(xw, h0, weight_hh, fires)
    xw, h0, weight_hh = permute_in(plan.perm, xw, h0, weight_hh)

    # compact[q] = [h0_q, state after q's 1st firing, after its 2nd, ...], time-major
    compact = [None] * len(plan.groups)
    for q in plan.run_order:
        grp = plan.groups[q]
        a, b, period, first, count = grp.start, grp.stop, grp.period, grp.first, grp.steps
        h0_q = h0[:, a:b]
        if count == 0:  # never fires within the sequence: holds h0 throughout
            compact[q] = h0_q.unsqueeze(0)
            continue
        # The RNN's input at firing j (step s_j = first + j P): xw_q(s_j) plus what the
        # groups it reads contribute, W_q,r h_r(s_j - 1). That product is taken once per
        # state of r (r is slower: fewer states than q has firings) and then repeated onto
        # q's firing steps; nothing of size |read units| x steps is ever materialised.
        rnn_input = xw[:, first : first + period * (count - 1) + 1 : period, a:b].transpose(0, 1)
        for read in grp.reads:
            src = plan.groups[read.source]
            contribution = compact[read.source] @ weight_hh[a:b, src.start : src.stop].T
            if read.rows is None:
                contribution = repeat_rows(contribution, read.repeat, read.start, count)
            else:
                contribution = contribution.index_select(0, index_tensor(read.rows, xw.device))
            rnn_input = rnn_input + contribution
        out = library_rnn_tanh(rnn_input, h0_q, weight_hh[a:b, a:b])
        compact[q] = torch.cat([h0_q.unsqueeze(0), out], dim=0)

    outputs = HoldStates.apply(plan.groups, steps, *compact)
    h_last = torch.cat([c[-1] for c in compact], dim=1)
    return permute_out(plan.perm, outputs, h_last)


class HoldStates(torch.autograd.Function):
    """Every group's state at every step, (B, T, n): its compact rows [h0, after firing 1,
    ...] each held for `period` steps. Written group by group into the output, so that at
    most one group's repeated copy exists at a time (a cat of all of them would hold every
    copy and the output at once); the backward sums each held run back onto its row."""

    @staticmethod
    def forward(ctx, groups, steps, *compact):
        ctx.groups, ctx.steps = groups, steps
        batch = compact[0].shape[1]
        outputs = compact[0].new_empty(batch, steps, groups[-1].stop)
        for c, g in zip(compact, groups):
            # step t holds row (t + period - first) // period: row 0 (h0) before the first firing
            outputs[:, :, g.start : g.stop] = repeat_rows(c, g.period, g.period - g.first, steps).transpose(0, 1)
        return outputs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        grads = []
        for g in ctx.groups:
            rows = 1 + g.steps  # compact rows: h0 and one per firing
            shift = g.period - g.first  # padding in front, so that rows start at multiples of period
            padded = grad.new_zeros(rows * g.period, grad.shape[0], g.stop - g.start)
            padded[shift : shift + ctx.steps] = grad[:, :, g.start : g.stop].transpose(0, 1)
            grads.append(padded.view(rows, g.period, *padded.shape[1:]).sum(1))
        return None, None, *grads


def library_rnn_tanh(rnn_input, h0, weight_hh):
    """torch's fused tanh RNN (cuDNN on GPU, ATen's loop on CPU) on a precomputed input:
    h_t = tanh(input_t + W_hh h_{t-1}). Time-major, no biases (they are in xw).

    A library RNN always multiplies its input by W_ih; with W_ih = I that product is a
    copy (cheap next to the recurrence). The identity gets no gradient.
    """
    weight_ih = torch.eye(weight_hh.shape[0], dtype=weight_hh.dtype, device=weight_hh.device)
    if rnn_input.is_cuda:
        # cuDNN wants the weights in one flat buffer; give it one, so that it neither
        # copies them nor warns about a copy.
        flat = torch.cat([weight_ih.reshape(-1), weight_hh.reshape(-1)])
        split = weight_ih.numel()
        weight_ih, weight_hh = flat[:split].view(weight_ih.shape), flat[split:].view(weight_hh.shape)
    out, _ = torch._VF.rnn_tanh(
        rnn_input.contiguous(),
        h0.unsqueeze(0).contiguous(),
        [weight_ih, weight_hh],
        False,  # has_biases: the bias is already in xw
        1,  # num_layers
        0.0,  # dropout
        torch.is_grad_enabled(),  # train: cuDNN keeps its reserve space only when needed
        False,  # bidirectional
        False,  # batch_first
    )
    return out


# ---------------------------------------------------------------------------------------
# "compiled": forward loop and hand-written BPTT compiled by numba (CPU)


@functools.lru_cache(maxsize=256)
def compiled_plan(module_sizes, periods, order, offset, wiring="paper"):
    """Units in ascending (or descending) connection order; per module its units and the first
    unit it reads.

    A module reads the units [reads[m], n); entries in that range it does not read are
    structural zeros of the masked weight (a multiply-add that changes nothing), so any wiring
    is computed exactly. The layout is the one of the two where those ranges are shortest:
    ascending for the paper's wiring (a module reads slower ones, laid out after it),
    descending for the reversed one (it reads faster ones); under the full wiring every
    module reads [0, n) in either. The loops compute every firing module from the states of
    the step before, so the layout changes no result, only the work.
    """
    g = len(periods)
    reads = module_reads(order, wiring)

    def layout(by_order):
        starts, stops, at = [], [], 0
        for i in by_order:
            starts.append(at)
            at += module_sizes[i]
            stops.append(at)
        first_read = [min(starts[p] for p, j in enumerate(by_order) if reads[i][j]) for i in by_order]
        work = sum(module_sizes[i] * (at - r) for i, r in zip(by_order, first_read))
        return work, by_order, (starts, stops, first_read, [periods[i] for i in by_order])

    ascending = sorted(range(g), key=lambda i: order[i])
    # the first of a tie: ascending, the layout of every schedule before wirings existed
    _, by_order, columns = min(layout(ascending), layout(ascending[::-1]), key=lambda found: found[0])
    arrays = tuple(np.asarray(v, dtype=np.int64) for v in columns)
    return unit_permutation(module_sizes, by_order), arrays


class CompiledRecurrence(torch.autograd.Function):
    """The recurrence in the compiled layout; gradients by BPTT over the firing modules only."""

    @staticmethod
    def forward(ctx, xw, h0, weight_hh, plan_arrays, offset):
        outputs = torch.empty_like(xw, memory_format=torch.contiguous_format)
        xw_np, h0_np, w_np, out_np = numpy(xw), numpy(h0), numpy(weight_hh), outputs.numpy()
        with numba_kernels() as kernels:
            if xw.shape[0] == 1:  # one row: skip the thread pool
                kernels.forward_block(xw_np, h0_np, w_np, *plan_arrays, offset, out_np,
                                      np.zeros(1, dtype=np.int64))
            else:
                kernels.forward(xw_np, h0_np, w_np, *plan_arrays, offset, out_np)
        ctx.save_for_backward(outputs, h0, weight_hh)
        ctx.plan_arrays, ctx.offset = plan_arrays, offset
        return outputs, outputs[:, -1].clone()  # a view would tie the two outputs together

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_outputs, grad_h_last):
        outputs, h0, weight_hh = ctx.saved_tensors
        batch, steps, n = outputs.shape
        grad_h_last = outputs.new_zeros(batch, n) if grad_h_last is None else grad_h_last
        if grad_outputs is None:
            grad_outputs = grad_xw = torch.zeros_like(outputs)
        elif grad_outputs.is_contiguous():  # not ours to overwrite
            grad_xw = torch.empty_like(outputs)
        else:  # e.g. out.sum()'s expanded ones: the contiguous copy is ours, the kernel writes
            grad_outputs = grad_xw = grad_outputs.contiguous()  # xw's gradient over it (one B*T*n less)
        grad_h0 = torch.empty_like(outputs[:, 0])
        from models._numba_kernels import CHUNKS, ROWS

        chunks = min(-(-batch // ROWS), CHUNKS)  # blocks of ROWS rows, at most CHUNKS
        grad_w = outputs.new_zeros(chunks, n, n)
        g_out, g_last, out, h0_np = numpy(grad_outputs), numpy(grad_h_last), outputs.numpy(), numpy(h0)
        w, plan, offset = numpy(weight_hh), ctx.plan_arrays, ctx.offset
        g_xw, g_h0, g_w = grad_xw.numpy(), grad_h0.numpy(), grad_w.numpy()
        with numba_kernels() as kernels:
            if batch == 1:  # one row: skip the thread pool
                kernels.backward_block(g_out, g_last, out, h0_np, w, *plan, offset, g_xw, g_h0, g_w[0],
                                       np.zeros(1, dtype=np.int64))
            else:
                kernels.backward(g_out, g_last, out, h0_np, w, *plan, offset, g_xw, g_h0, g_w)
        for chunk in grad_w[1:]:  # in a fixed order: the sum does not depend on the threads
            grad_w[0] += chunk
        return grad_xw, grad_h0, grad_w[0], None, None


def numpy(tensor):
    return tensor.detach().contiguous().numpy()


def compiled_recurrence(xw, h0, weight_hh, fires, module):
    if xw.device.type != "cpu" or xw.dtype not in (torch.float32, torch.float64):
        from models.errors import UserInputError

        raise UserInputError(
            f"the 'compiled' CW-RNN backend runs on CPU in float32/float64, not on {xw.device.type} in "
            f"{xw.dtype}: use backend 'auto' or 'modular'"
        )
    perm, arrays = compiled_plan(*module_key(module))
    xw, h0, weight_hh = permute_in(perm, xw, h0.to(xw.dtype), weight_hh.to(xw.dtype))
    if xw.shape[1] == 0:
        return permute_out(perm, xw.new_zeros(xw.shape), h0)
    outputs, h_last = CompiledRecurrence.apply(xw, h0, weight_hh, arrays, module.offset)
    return permute_out(perm, outputs, h_last)


@contextlib.contextmanager
def numba_kernels(source: str = "models._numba_kernels"):
    """The compiled loops of `source` (the CW-RNN's, or the GRU's models._numba_gru: both
    name their drivers alike), running on as many threads as torch uses (the tests pin torch
    to one). numba compiles them at their first call for each dtype (a few seconds) and keeps
    the result in its on-disk cache (models/__pycache__) for later runs.

    Threads (measured on 2 cores): numba's OpenMP layer runs on torch's own OpenMP runtime,
    not beside it. Its module binds GOMP_parallel and omp_set_num_threads to torch's libgomp,
    already in the global symbol scope (LD_DEBUG=bindings), so the loops run on torch's
    worker threads and no second pool starts. Two consequences:
    - numba's pool start (at `numba.set_num_threads`, or at the first parallel call) sets
      that runtime's thread count to numba's (all cores), which torch then reads as its own:
      hence the restore below (measured: 1 -> 2 without it). With one torch thread the loops
      run on the calling thread and the pool is never started. That switch from one thread
      to two is the one way found in which CW-RNN runs slowed a later run in the same
      process (minutes instead of seconds: two threads on a busy 2-core machine, next point);
      otherwise they leave nothing behind (no thread burning CPU, the same OS threads);
    - OpenMP's wait policy applies to the loops too. GNU OpenMP's default has idle threads
      spin for milliseconds after every parallel region; on a busy 2-core machine the
      spinning threads keep the one with work waiting, and a training run on 2 threads
      took many times its usual time, fresh or after CW-RNN runs alike. So `models` sets a
      short spin before torch loads (models/_threads.py; the figures: docs/performance.md),
      and a run after CW-RNN runs takes what it takes fresh, on 1 and 2 threads
      (`cwbench perf interference`, results/speed/interference_cpu.md)."""
    import numba

    kernels = importlib.import_module(source)
    threads = torch.get_num_threads()
    try:
        if threads == 1:  # numba's pool is never started: its idle workers would spin beside torch's
            yield types.SimpleNamespace(forward=kernels.forward_serial, backward=kernels.backward_serial,
                                        forward_block=kernels.forward_block, backward_block=kernels.backward_block)
            return
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        yield kernels
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def run_kernels(source: str, driver: str, batch: int, *args) -> None:
    """The driver `driver` ("forward" or "backward") of the compiled loops in `source` on
    `args`: for one batch row its serial form (`driver`_serial) on the calling thread, so that
    numba's thread pool is never touched; otherwise under `numba_kernels`. For the cells whose
    drivers take the same arguments in both forms (IndRNN, minGRU, Phased LSTM)."""
    if batch == 1:  # one row: skip the thread pool
        getattr(importlib.import_module(source), f"{driver}_serial")(*args)
        return
    with numba_kernels(source) as kernels:
        getattr(kernels, driver)(*args)


@functools.cache
def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


# name -> recurrence(xw, h0, masked weight_hh, fires, module) -> (outputs, h_last)
BACKENDS = {
    "reference": lambda xw, h, w, fires, module: reference_recurrence(xw, h, w, fires),
    "modular": modular_recurrence,
    "compiled": compiled_recurrence,
}


# ---------------------------------------------------------------------------------------
# auto


def pick_backend(module, x) -> str:
    """The fastest backend for this device and shape, as measured (results/speed/).

    CPU (fwd+bwd, results/speed/speed_cpu.md, from `cwbench perf kernels`): compiled wins
    at every shape of the grid, by the widest margin at the batch-1 audio shapes, and has
    the lowest peak memory. Without numba, or for a dtype it does not run (half
    precision), modular.

    GPU: modular (cuDNN per clock period); compiled is CPU code.
    """
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or not numba_available():
        return "modular"
    return "compiled"


# ---------------------------------------------------------------------------------------
# The newer cells' compiled kernels (IndRNN, Phased LSTM): what they run, and which `auto` runs


def kernel_unsupported(x, *tensors) -> str:
    """Why a compiled cell kernel (models/_numba_indrnn.py, _numba_plstm.py) cannot run on x,
    with the weights and initial states `tensors` ("" if it can)."""
    if not numba_available():
        return "numba is not installed"
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] == 0 or x.shape[1] == 0:
        return f"it needs a batched input (B, T, I) with B, T >= 1, not {getattr(x, 'shape', type(x).__name__)}"
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return f"it runs on CPU in float32/float64, not on {x.device.type} in {x.dtype}"
    if any(t is not None and (t.dtype != x.dtype or t.device != x.device) for t in tensors):
        return f"the input is {x.dtype} but the weights or initial state are not"
    return ""


def resolve_kernel(arch: str, backend: str, x, tensors, faster) -> str:
    """"torch" or "compiled" for a cell whose implementations are those two: the backend asked
    for, or for "auto" the compiled one where it can run and `faster(x)` (a rule from
    measurements) says so. Asking for "compiled" where it cannot run is an error saying why."""
    if backend == "torch":
        return "torch"
    why = kernel_unsupported(x, *tensors)
    if backend == "compiled":
        if why:
            from models.errors import UserInputError

            raise UserInputError(f"the 'compiled' {arch} implementation cannot run this: {why}; use backend "
                                 "'auto' or 'torch'")
        return "compiled"
    return "torch" if why or not faster(x) else "compiled"

