"""What each perf tool is asked to do, as a typed object: the tools (kernels.py, store.py,
interference.py) take one of these, never argparse's Namespace. The command line builds
them (bench/perf/commands.py); a test or a script can build them directly.

Plain dataclasses, torch-free: the command line imports them before it has checked its
arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OUT = Path("results/speed")

@dataclass(frozen=True)
class KernelsOptions:
    """`cwbench perf kernels`."""

    device: str = "auto"  # auto: the CPU, and the GPU too when torch sees one; or cpu, cuda
    quick: bool = False  # a tiny grid: checks the tool, not speed (writes speed_quick_<device>.*)
    out: Path = OUT
    repeats: int = 5  # minimum timed rounds per shape
    min_time: float = 3.0  # cheap shapes repeat rounds for this many seconds
    shapes: tuple[str, ...] = ()  # only these shapes or families; empty: the whole grid
    full: bool = False  # on CPU too, the full B=256 T=1024 shape
    memory: bool = True  # measure peak memory of one fwd+bwd
    command: str = "cwbench perf kernels"  # the command recorded in the tables


@dataclass(frozen=True)
class StoreOptions:
    """`cwbench perf store`."""

    sizes: tuple[int, ...] = ()  # store sizes in records; empty: store.SIZES (store.QUICK_SIZES with quick)
    quick: bool = False
    out: Path = OUT
    command: str = "cwbench perf store"


@dataclass(frozen=True)
class InterferenceOptions:
    """`cwbench perf interference`."""

    repeats: int = 5  # fresh/after pairs per setting (alternating which goes first)
    quick: bool = False  # one repeat of a one-epoch LSTM after one short CW-RNN run
    out: Path = OUT
    command: str = "cwbench perf interference"


@dataclass(frozen=True)
class OverheadOptions:
    """`cwbench perf overhead`."""

    quick: bool = False  # two architectures, a few steps, a one-run profile: checks the tool (overhead_quick_cpu.*)
    out: Path = OUT
    repeats: int = 2  # bare/suite pairs per architecture and shape (alternating which goes first)
    archs: tuple[str, ...] = ()  # only these architectures; empty: overhead.ARCHS (quick: two)
    shapes: tuple[str, ...] = ()  # only these shapes (audio-1000, copy); empty: both
    profile: bool = True  # also time a whole profile through `cwbench run`
    profile_seeds: int = 1  # seeds of that profile run
    profile_steps: int = 0  # its training steps; 0: the profile's
    stack_seeds: int = 5  # seeds of the same profile trained with --stack (5: its 600 runs; quick: 2)
    command: str = "cwbench perf overhead"
