"""`cwbench perf kernels` (`nox -s perf -- kernels`): how fast each CW-RNN backend is next
to the library RNN, LSTM and GRU kernels (oneDNN/ATen on CPU, cuDNN on GPU), how fast the
rnn and gru run on torch's kernel and on the compiled one (models/library.py), how fast the
newer recurrences (IndRNN, Phased LSTM, minGRU, LRU) run at the same budget, each on every
implementation (torch's loop and the compiled kernel; the sequential loop and the parallel scan),
and which `auto` picks.

For every shape of a grid (the suite's tasks plus two large shapes) it times, in one
process and interleaved round by round so that drifts in machine load hit every
candidate alike:
- fwd: the forward pass of the recurrent layer alone, under torch.no_grad (inference);
- fwd+bwd: forward, sum of the outputs, backward (one training step without optimiser).
It reports medians over rounds (after warm-up) and the ratios CW-RNN / torch's library
kernel at the same hidden size and at the same effective parameter budget, compiled /
torch for the rnn and gru at the budget, plus peak memory of one fwd+bwd. Results go to
<out>/speed_<device>.md and .csv, and a plot speed_<device>.png of time vs hidden size
per architecture.

Only torch, pandas, seaborn (and numba for the "compiled" backend, where installed) are
needed: `python -m bench perf kernels` runs on a bare GPU machine. The committed tables are
results/speed/speed_<device>.*; docs/performance.md reads them.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from bench.perf.options import KernelsOptions
from bench.perf.tables import header_lines
from bench.store.files import atomic_write, write_figure
from bench.sweep import provenance
from models.architectures import ARCHITECTURES
from models.backends import numba_available, pick_backend
from models.clockwork import BACKENDS, ClockworkRNN
from models.counting import clockwork_count, library_rnn_count
from models.errors import UserInputError
from models.library import GRU, RNN, pick_implementation
from models.registry import ModelSpec, build_rnn, implementation
from models.schedules import periods_for

LIBRARY = {"rnn": RNN, "lstm": nn.LSTM, "gru": GRU}
COMPILED = ("rnn", "gru")  # the library architectures with a compiled implementation, timed at the budget
NEWER = ("indrnn", "phased_lstm", "mingru", "lru")  # timed at the budget on each of their implementations

# The targets: (shape family, device, measure, library kernel, bound)
TARGETS = [
    ("b64", "cuda", "fwdbwd", "rnn@hidden", 1.0),
    ("b64", "cuda", "fwd", "rnn@hidden", 0.5),
    ("b256", "cuda", "fwdbwd", "rnn@hidden", 0.4),
    ("audio", "cpu", "fwdbwd", "lstm@budget", 1.0),
]


@dataclass
class Shape:
    name: str  # row label, e.g. "audio-250"
    family: str  # audio, timit, copy, b64, b256
    batch: int
    steps: int
    input_size: int  # the CW-RNN's and the library's (audio: 1, always zero)
    module_sizes: tuple[int, ...]
    periods: tuple[int, ...]
    counted_inputs: int | None = None  # inputs counted in the budget (audio: 0, frozen); None = input_size
    note: str = ""

    @property
    def hidden(self) -> int:
        return sum(self.module_sizes)

    @property
    def budget(self) -> int:
        """The CW-RNN's effective recurrent parameters (models.counting, closed form)."""
        inputs = self.input_size if self.counted_inputs is None else self.counted_inputs
        return clockwork_count(inputs, self.module_sizes, self.periods)

    def library_hidden(self, arch: str) -> int:
        """The library hidden size whose effective recurrent count is closest to the budget."""
        inputs = self.input_size if self.counted_inputs is None else self.counted_inputs
        # up to the budget itself: an architecture with few parameters per unit (minGRU) needs many units
        return min(range(1, max(4 * self.hidden, self.budget) + 2),
                   key=lambda h: (abs(library_rnn_count(arch, inputs, h) - self.budget), h))


def even_sizes(n: int, g: int) -> tuple[int, ...]:
    """n units in g modules as evenly as possible, the first (fastest) taking the remainder,
    as the suite's budget matcher does."""
    k, extra = divmod(n, g)
    return tuple(k + 1 if i < extra else k for i in range(g))


def budget_sizes(budget: int, g: int, input_size: int, output_size: int) -> tuple[int, ...]:
    """The module sizes the suite uses for a budget (recurrent layer + readout)."""
    from bench.suite.budget import match_budget

    return match_budget("cwrnn/exponential", budget, input_size, output_size, tolerance=1.0,
                        cw_modules=g).spec.module_sizes


def grid(device: str, quick: bool, full: bool) -> list[Shape]:
    if quick:  # a few seconds: for the test of this script, not for numbers
        return [
            Shape("audio-100", "audio", 1, 32, 1, budget_sizes(100, 9, 0, 1), tuple(periods_for("exponential", 9)),
                  counted_inputs=0, note="quick: T=32"),
            Shape("b-tiny", "b64", 4, 16, 3, even_sizes(16, 4), tuple(periods_for("exponential", 4)),
                  note="quick"),
        ]
    shapes = []
    p9, p7, p8 = (tuple(periods_for("exponential", g)) for g in (9, 7, 8))
    for budget in (100, 250, 500, 1000):  # audio suite: 9 modules, periods 1..256, no input
        shapes.append(Shape(f"audio-{budget}", "audio", 1, 320, 1, budget_sizes(budget, 9, 0, 1), p9,
                            counted_inputs=0))
    for budget in (10_000, 25_000, 50_000, 100_000):  # TIMIT suite: 13 MFCC inputs, 25 classes
        shapes.append(Shape(f"timit-{budget // 1000}k", "timit", 16, 150, 13, budget_sizes(budget, 7, 13, 25), p7))
    shapes.append(Shape("copy", "copy", 32, 120, 10, even_sizes(40, 8), p8, note="delay 100"))
    shapes.append(Shape("b64", "b64", 64, 512, 16, even_sizes(256, 8), p8))
    if device == "cuda" or full:
        shapes.append(Shape("b256", "b256", 256, 1024, 16, even_sizes(512, 8), p8))
    else:  # 2 CPU cores: the full shape takes minutes per candidate
        shapes.append(Shape("b256/cpu", "b256", 32, 256, 16, even_sizes(512, 8), p8,
                            note="reduced on CPU: B=32, T=256 instead of B=256, T=1024 (--full for the real one)"))
    return shapes


# ---------------------------------------------------------------------------------------
# Candidates: what is timed for one shape


@dataclass
class Candidate:
    arch: str  # cwrnn, rnn, lstm, gru
    kernel: str  # CW-RNN backend name, or the library architecture's implementation (torch, compiled)
    hidden: int
    match: str  # "" for the CW-RNN, else "hidden" or "budget"
    params: int
    module: nn.Module
    x: torch.Tensor
    fwd: list[float] = field(default_factory=list)
    fwdbwd: list[float] = field(default_factory=list)
    peak_mb: float = float("nan")

    @property
    def label(self) -> str:
        return f"cwrnn[{self.kernel}]" if self.arch == "cwrnn" else f"{self.arch}[{self.kernel}]@{self.match}"


def candidates(shape: Shape, device: str, backends: list[str]) -> list[Candidate]:
    """The CW-RNN on each of `backends`; every library architecture on torch's kernel at the
    CW-RNN's hidden size and at its budget, and rnn and gru on the compiled kernel at the
    budget where `backends` has "compiled" (CPU, numba installed); the newer architectures
    (NEWER) at the budget on each of their implementations."""
    torch.manual_seed(0)
    x = torch.randn(shape.batch, shape.steps, shape.input_size, device=device)
    if shape.counted_inputs == 0:
        x.zero_()  # the audio task's network has no input: a zero channel
    found = []
    for backend in backends:
        module = ClockworkRNN(shape.input_size, list(shape.module_sizes), list(shape.periods), backend=backend)
        found.append(Candidate("cwrnn", backend, shape.hidden, "", shape.budget, module.to(device), x))
    inputs = shape.input_size if shape.counted_inputs is None else shape.counted_inputs
    for arch, cls in LIBRARY.items():
        for match, hidden in (("hidden", shape.hidden), ("budget", shape.library_hidden(arch))):
            kernels = ["torch"] + ["compiled"] * (arch in COMPILED and match == "budget" and "compiled" in backends)
            for kernel in kernels:
                options = {} if arch == "lstm" else {"backend": kernel}
                module = cls(shape.input_size, hidden, batch_first=True, **options).to(device)
                found.append(Candidate(arch, kernel, hidden, match, library_rnn_count(arch, inputs, hidden), module, x))
    for arch in NEWER:
        hidden = shape.library_hidden(arch)
        for kernel in ARCHITECTURES[arch].implementations:
            module = build_rnn(ModelSpec(arch, hidden), shape.input_size, kernel).to(device)
            found.append(Candidate(arch, kernel, hidden, "budget", library_rnn_count(arch, inputs, hidden), module, x))
    return found


def library_auto(c: Candidate, device: str) -> str:
    """What `auto` runs for a library (or newer) candidate's architecture and shape."""
    if c.arch in NEWER:
        return implementation(build_rnn(ModelSpec(c.arch, c.hidden), c.x.shape[2]), c.x)
    if c.arch not in COMPILED:
        return "torch"
    return pick_implementation(c.arch, device, c.x.dtype, c.x.shape[0], c.hidden, c.x.shape[1])


def forward(c: Candidate):
    with torch.no_grad():
        c.module(c.x)


def forward_backward(c: Candidate):
    out, _ = c.module(c.x)
    out.sum().backward()


def clear_grads(c: Candidate):
    for p in c.module.parameters():
        p.grad = None


def timed(fn, c: Candidate, device: str, calls: int) -> float:
    """ms per call of `calls` back-to-back calls, after one untimed call.

    The untimed call matters on CPU: the first op after another candidate's heavy work
    waits for the thread pool to come back (a short forward can take several times its own
    time then: docs/performance.md), a cost of switching candidates, not of the candidate."""
    clear_grads(c)
    fn(c)
    clear_grads(c)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn(c)
        clear_grads(c)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3 / calls


def peak_memory_mb(c: Candidate, device: str) -> float:
    """Peak memory allocated by torch during one fwd+bwd, above what was allocated before.

    GPU: the caching allocator's own peak counter. CPU: torch's profiler memory timeline
    (every tensor allocation and free); numba's few scratch vectors (n floats) are not seen.
    """
    clear_grads(c)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        forward_backward(c)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    try:
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import Action

        with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                                     record_shapes=True, with_stack=True) as prof:
            forward_backward(c)
        now = peak = 0
        for _, action, _, size in prof._memory_profile().timeline:
            now += size if action == Action.CREATE else -size if action == Action.DESTROY else 0
            peak = max(peak, now)
        return peak / 2**20
    except Exception:  # a private profiler API: report no number rather than a wrong one
        return float("nan")


@contextlib.contextmanager
def quiet_stderr():
    """Silence the profiler's C++ start/stop lines (written to fd 2, past Python's sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def measure(shape: Shape, device: str, backends: list[str], repeats: int, min_time: float, memory: bool,
            log=print) -> list[Candidate]:
    found = candidates(shape, device, backends)
    calls = {}
    for c in found:  # warm-up: compilation (numba, cuDNN plans), allocator, caches
        for _ in range(2):
            forward(c)
            forward_backward(c)
        # calls per timing: enough for ~10 ms, so that a fast candidate is not timed by the clock's grain
        calls[c.label] = max(1, min(50, math.ceil(10.0 / timed(forward_backward, c, device, 1))))
    start = time.perf_counter()
    rounds = 0
    # at least `repeats` rounds; cheap shapes go on until min_time so that medians are stable
    while rounds < repeats or (time.perf_counter() - start < min_time and rounds < 20 * repeats):
        for c in found:
            c.fwd.append(timed(forward, c, device, calls[c.label]))
            c.fwdbwd.append(timed(forward_backward, c, device, calls[c.label]))
        rounds += 1
    log(f"  {shape.name}: {rounds} rounds in {time.perf_counter() - start:.1f} s")
    if memory:
        for c in found:
            c.peak_mb = peak_memory_mb(c, device)
    return found


# ---------------------------------------------------------------------------------------
# Tables, plot


def rows_for(shape: Shape, found: list[Candidate], device: str, auto: str) -> list[dict]:
    median = {c.label: (statistics.median(c.fwd), statistics.median(c.fwdbwd), c.peak_mb) for c in found}
    rows = []
    for c in found:
        fwd, fwdbwd, peak = median[c.label]
        row = dict(device=device, shape=shape.name, family=shape.family, batch=shape.batch, steps=shape.steps,
                   input_size=shape.input_size, modules=len(shape.module_sizes), arch=c.arch, kernel=c.kernel,
                   label=c.label, match=c.match or "-", hidden=c.hidden, params=c.params,
                   fwd_ms=fwd, fwdbwd_ms=fwdbwd, peak_mb=peak, rounds=len(c.fwd),
                   auto=auto if c.arch == "cwrnn" else library_auto(c, device), note=shape.note)
        for lib in LIBRARY:  # against torch's kernels, under their old names (rnn@hidden: rnn[torch]@hidden)
            for match in ("hidden", "budget"):
                other = median[f"{lib}[torch]@{match}"]
                row[f"fwd/{lib}@{match}"] = fwd / other[0] if c.arch == "cwrnn" else float("nan")
                row[f"fwdbwd/{lib}@{match}"] = fwdbwd / other[1] if c.arch == "cwrnn" else float("nan")
        ref = median.get("cwrnn[reference]")
        row["peak/reference"] = peak / ref[2] if ref and c.arch == "cwrnn" else float("nan")
        rows.append(row)
    return rows


def fmt(value, digits=2):
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def markdown(df, device: str, header: dict, notes: list[str]) -> str:
    lines = header_lines(f"Speed: CW-RNN backends vs library RNN kernels, and rnn/gru on torch or compiled ({device})",
                         header)
    lines += ["", "## What auto runs, against the library kernels", "",
              "Ratios are CW-RNN time / the time of torch's library kernel (the `[torch]` rows), measured in the "
              "same process (below 1: the CW-RNN is faster). `@hidden`: the library RNN with the CW-RNN's hidden "
              "size; `@budget`: with the "
              "closest effective parameter count.", ""]
    auto_rows = df[(df.arch == "cwrnn") & (df.kernel == df.auto)]
    cols = ["shape", "hidden", "params", "auto", "fwd_ms", "fwdbwd_ms", "fwd/rnn@hidden", "fwdbwd/rnn@hidden",
            "fwdbwd/lstm@hidden", "fwdbwd/rnn@budget", "fwdbwd/lstm@budget", "fwdbwd/gru@budget", "peak/reference"]
    lines += table(auto_rows, cols)
    lines += ["", "## Targets (issue 6)", ""]
    for family, target_device, measure, kernel, bound in TARGETS:
        got = auto_rows[auto_rows.family == family]
        if target_device != device or got.empty:
            lines.append(f"- {family} {measure} <= {bound}x {kernel}: measured on {target_device} only")
            continue
        for _, r in got.iterrows():
            ratio = r[f"{measure}/{kernel}"]
            verdict = "met" if ratio <= bound else "MISSED"
            lines.append(f"- {r['shape']} {measure} <= {bound}x {kernel}: {ratio:.2f}x, {verdict}")
    mem = auto_rows["peak/reference"]
    if mem.notna().any():
        worst = auto_rows.loc[mem.idxmax()]
        lines.append(f"- peak training memory of auto <= reference: worst {worst['peak/reference']:.2f}x "
                     f"({worst['shape']}), {'met' if mem.max() <= 1.0 else 'MISSED'}")
    lines += ["", "## rnn and gru: torch's kernel or the compiled one", ""] + implementations(df)
    lines += ["", "## Newer recurrences at the budget, on each implementation", ""] + newer(df)
    lines += ["", "## Every candidate", "", "Times in ms (median over rounds); peak memory in MiB of one fwd+bwd.",
              ""]
    cols = ["shape", "label", "hidden", "params", "fwd_ms", "fwdbwd_ms", "peak_mb", "fwd/rnn@hidden",
            "fwdbwd/rnn@hidden", "fwdbwd/lstm@budget", "rounds"]
    lines += table(df, cols)
    lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def implementations(df) -> list[str]:
    """Per shape, rnn and gru at the budget on both implementations, and what `auto` runs."""
    both = df[df.arch.isin(COMPILED) & (df.match == "budget")]
    if "compiled" not in set(both.kernel):
        return ["Not measured here: the compiled implementations run on CPU, with numba installed."]
    rows = []
    for (shape, arch), got in both.groupby(["shape", "arch"], sort=False):
        torch_row, compiled = got[got.kernel == "torch"].iloc[0], got[got.kernel == "compiled"].iloc[0]
        rows.append({"shape": shape, "arch": arch, "hidden": torch_row["hidden"],
                     "torch fwd_ms": torch_row["fwd_ms"], "compiled fwd_ms": compiled["fwd_ms"],
                     "torch fwdbwd_ms": torch_row["fwdbwd_ms"], "compiled fwdbwd_ms": compiled["fwdbwd_ms"],
                     "compiled/torch fwdbwd": compiled["fwdbwd_ms"] / torch_row["fwdbwd_ms"],
                     "auto": torch_row["auto"]})
    import pandas as pd

    intro = ["The library size at the CW-RNN's budget, on torch's kernel and on the compiled one "
             "(models/library.py: the same function, the same weights); below 1: compiled is faster. `auto`: "
             "what `backend=\"auto\"` runs at this shape (models.library.pick_implementation, a rule from "
             "measurements).", ""]
    return intro + table(pd.DataFrame(rows), list(rows[0]))


def newer(df) -> list[str]:
    """Per shape, the newer architectures at the budget on each implementation, and each one's
    time over the architecture's first implementation (below 1: faster than that loop)."""
    rows = df[df.arch.isin(NEWER)].copy()
    if rows.empty:
        return ["Not measured here."]
    first = {(r["shape"], r["arch"]): r["fwdbwd_ms"] for _, r in rows.iterrows()
             if r["kernel"] == ARCHITECTURES[r["arch"]].implementations[0]}
    rows["fwdbwd/first"] = [r["fwdbwd_ms"] / first[(r["shape"], r["arch"])]
                            if (r["shape"], r["arch"]) in first else float("nan") for _, r in rows.iterrows()]
    intro = ["IndRNN, Phased LSTM, minGRU and LRU with the effective parameter count closest to the CW-RNN's budget "
             "(models/architectures.py), on each implementation of their recurrence; `fwdbwd/first`: the time over "
             "the same architecture's first implementation (IndRNN, Phased LSTM: torch's loop, against the compiled "
             "kernel; minGRU, LRU: the sequential loop, against the parallel scan). `auto`: what "
             "`backend=\"auto\"` runs here.", ""]
    return intro + table(rows, ["shape", "steps", "label", "hidden", "params", "fwd_ms", "fwdbwd_ms",
                                "fwdbwd/first", "auto"])


def table(df, cols) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    return out


def plot(df, path: Path, device: str):
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    data = df.copy()
    data["architecture"] = [label.split("@")[0] for label in data.label]  # cwrnn[compiled], rnn[torch], ...
    data["size"] = ["CW-RNN" if m == "-" else f"library @{m}" for m in data.match]
    order = list(dict.fromkeys(data.architecture))  # CW-RNN backends first, then rnn, lstm, gru
    grid_ = sns.relplot(data=data.sort_values("hidden"), x="hidden", y="fwdbwd_ms", hue="architecture",
                        hue_order=order, style="size", col="family", kind="line", markers=True, dashes=False,
                        markersize=8, facet_kws=dict(sharex=False, sharey=False), col_wrap=3, height=3.2)
    grid_.set(xscale="log", yscale="log")
    for ax in grid_.axes.flat:  # plain numbers at 1, 2, 5 x 10^k on log axes
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
    grid_.set_titles("{col_name}")
    grid_.set_axis_labels("hidden units", "fwd+bwd per batch (ms)")
    grid_.figure.suptitle(f"CW-RNN backends vs library kernels ({device}): time vs hidden size", y=1.02)
    write_figure(grid_.figure, path, dpi=110, bbox_inches="tight")


# ---------------------------------------------------------------------------------------
# Entry point


def run(options: KernelsOptions) -> int:
    """Measure on options.device (auto: the CPU, and the GPU when there is one) and write the tables."""
    devices = ["cpu", "cuda"] if options.device == "auto" and torch.cuda.is_available() else [options.device]
    devices = ["cpu" if d == "auto" else d for d in devices]
    if "cuda" in devices and not torch.cuda.is_available():
        raise UserInputError("--device cuda but torch sees no CUDA GPU: use --device cpu (or auto)")
    if options.shapes:
        known = {name for d in devices for s in grid(d, options.quick, options.full) for name in (s.name, s.family)}
        unknown = [name for name in options.shapes if name not in known]
        if unknown:
            raise UserInputError(f"no shape or family named {', '.join(unknown)} in this grid: --shapes takes "
                                 f"{', '.join(sorted(known))}")
    options.out.mkdir(parents=True, exist_ok=True)
    for device in devices:
        run_device(device, options)
    return 0


def run_device(device: str, options: KernelsOptions):
    import pandas as pd

    if device == "cuda":
        torch.backends.cudnn.benchmark = False  # the library's default, as a user would have it
    backends = [b for b in BACKENDS if device == "cpu" or b != "compiled"]
    if "compiled" in backends and not numba_available():
        backends.remove("compiled")
    shapes = grid(device, options.quick, options.full)
    if options.shapes:
        shapes = [s for s in shapes if s.name in options.shapes or s.family in options.shapes]
        if not shapes:  # named for the other device's grid only (b256 on a GPU, b256/cpu on the CPU)
            print(f"speed on {device}: none of --shapes {' '.join(options.shapes)} is in its grid", flush=True)
            return
    started = time.perf_counter()
    print(f"speed on {device}: {len(shapes)} shapes, backends {', '.join(backends)}", flush=True)
    rows = []
    for shape in shapes:
        found = measure(shape, device, backends, options.repeats, 0.2 if options.quick else options.min_time,
                        memory=options.memory, log=lambda m: print(m, flush=True))
        auto = pick_backend(found[0].module, found[0].x)
        rows += rows_for(shape, found, device, auto)
    elapsed = time.perf_counter() - started

    df = pd.DataFrame(rows)
    header = {
        "device": provenance.device_name(device),
        "versions": ", ".join(f"{k} {v}" for k, v in provenance.versions().items()),
        "threads": torch.get_num_threads(),
        "date": provenance.now(),
        "commit": provenance.git_commit(),
        "command": options.command,
        "wall time": f"{elapsed:.0f} s",
    }
    if device == "cuda":  # float32 RNNs and matmuls may run in TF32: say which
        header["TF32"] = (f"cuDNN {torch.backends.cudnn.allow_tf32}, "
                          f"matmul {torch.backends.cuda.matmul.allow_tf32} (torch defaults, for every candidate)")
    for key, value in header.items():
        df[key] = value
    notes = [
        "fwd = forward under torch.no_grad; fwd+bwd = forward, sum of the outputs, backward. Medians over "
        "rounds in which every candidate runs in turn (one untimed call, then enough timed calls for ~10 ms); "
        "two warm-up calls per candidate first (numba compilation and cuDNN set-up excluded).",
        "Library kernels: torch.nn.RNN/LSTM/GRU (cuDNN on GPU; on CPU oneDNN for LSTM, ATen's per-step loop for "
        "RNN and GRU), the `[torch]` rows; `[compiled]`: models/library.py's numba kernels for rnn and gru. "
        "Effective recurrent parameters in closed form (models.counting); `@budget` is the library "
        "hidden size closest to the CW-RNN's count. Shapes use exponential periods.",
        "audio: B=1, T=320, a zero input channel (the task's), input weights not counted (frozen, as in the suite); "
        "CW-RNN module sizes are the suite's for budgets 100-1000 (recurrent + readout). timit: B=16, T=150, 13 "
        "inputs, the suite's sizes for 10k-100k. copy: B=32, T=120 (delay 100), 10 inputs, n=40.",
        "Peak memory: torch allocations during one fwd+bwd above those before it (GPU: the allocator's peak; CPU: "
        "the profiler's memory timeline).",
    ] + sorted({s.note for s in shapes if s.note and "reduced" in s.note})
    suffix = "quick_" if options.quick else ""
    stem = options.out / f"speed_{suffix}{device}"
    atomic_write(stem.with_suffix(".csv"), df.to_csv(index=False))
    atomic_write(stem.with_suffix(".md"), markdown(df, device, header, notes))
    plot(df, stem.with_suffix(".png"), device)
    print(f"wrote {stem}.md, .csv, .png ({elapsed:.0f} s)", flush=True)

