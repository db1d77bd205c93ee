"""`cwbench perf kernels|store|interference|overhead`, and `cwbench speed` (the old name of `perf
kernels`, kept for one release): each subcommand's arguments, which are only its own
tool's, and the command that builds the tool's options (bench/perf/options.py) and runs it.

Torch-free, so that `--help` and a mistyped option answer at once: a tool is imported only
when its command runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench.arguments import positive_int
from bench.perf.options import OUT, InterferenceOptions, KernelsOptions, OverheadOptions, StoreOptions
from models.errors import UserInputError

PERF_DESCRIPTION = ("Measure the tool itself: `kernels` (CW-RNN backends and rnn/gru implementations vs torch's "
                    "RNN, LSTM and GRU kernels), `store` (the results store's cost by size), `interference` (an "
                    "LSTM run's time fresh and after CW-RNN runs in the same process), `overhead` (a suite run against "
                    "the bare training loop, and a whole profile's wall time). Each writes its tables to "
                    "results/speed/ unless --out says otherwise; docs/performance.md says what they found.")
KERNELS_DESCRIPTION = ("How fast each CW-RNN backend is next to the library RNN, LSTM and GRU kernels, and rnn/gru "
                       "on torch's kernel or the compiled one: writes <out>/speed_<device>.md, .csv and .png "
                       "(bench/perf/kernels.py).")
STORE_DESCRIPTION = ("What the results store costs as it grows: append, finished ids and index rebuild by store size, "
                     "beside the old whole-file rewrite; writes <out>/store_cpu.md and .csv (bench/perf/store.py).")
INTERFERENCE_DESCRIPTION = ("Whether a training run slows down after other runs in the same process: an LSTM run "
                            "in a fresh process and after CW-RNN runs, on 1 and 2 threads, idle and beside a busy "
                            "process (CPU only); writes <out>/interference_cpu.md and .csv "
                            "(bench/perf/interference.py).")
OVERHEAD_DESCRIPTION = ("What a suite run costs beyond its training: per step, each architecture's bare training loop "
                        "(forward, readout, loss, backward, clip, optimizer step) against the same run through the "
                        "suite's train_one, at the audio-1000 and copy shapes, in one process on 1 thread; then the "
                        "wall time of a whole profile through `cwbench run`. Writes <out>/overhead_cpu.md and .csv "
                        "(bench/perf/overhead.py).")
SPEED_DESCRIPTION = ("The old name of `cwbench perf kernels`, kept for one release: the same options and tables. "
                     "`cwbench speed --store` and `--interference` are now `cwbench perf store` and "
                     "`cwbench perf interference`.")


# ---------------------------------------------------------------------------------------
# Command-line arguments


def common_arguments(p: argparse.ArgumentParser, quick: str) -> None:
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")


def kernels_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=KernelsOptions.device, choices=["auto", "cpu", "cuda"],
                   help="auto: the CPU, and the GPU too when there is one")
    common_arguments(p, "a tiny grid (seconds): checks the tool, not speed")
    p.add_argument("--repeats", type=positive_int, default=KernelsOptions.repeats,
                   help=f"minimum timed rounds per shape (default {KernelsOptions.repeats})")
    p.add_argument("--min-time", type=float, default=KernelsOptions.min_time,
                   help=f"cheap shapes repeat rounds for this many seconds (default {KernelsOptions.min_time:g})")
    p.add_argument("--shapes", nargs="+", help="only these shapes or families (e.g. audio b64)")
    p.add_argument("--full", action="store_true", help="on CPU too, the full B=256 T=1024 shape (slow)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")


def store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", nargs="+", type=positive_int, metavar="N",
                   help="store sizes in records (default 1000 10000 100000; --quick: 100 1000)")
    common_arguments(p, "sizes 100 and 1000 (seconds): checks the tool")


def interference_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=positive_int, default=InterferenceOptions.repeats,
                   help=f"fresh/after pairs per setting (default {InterferenceOptions.repeats})")
    common_arguments(p, "one repeat of a one-epoch LSTM run after one short CW-RNN run: checks the tool")


def overhead_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=positive_int, default=OverheadOptions.repeats,
                   help=f"bare/suite pairs per architecture and shape (default {OverheadOptions.repeats})")
    p.add_argument("--archs", nargs="+", help="only these architectures (default: the audio paper profile's "
                   "rnn lstm gru cwrnn/exponential indrnn phased_lstm mingru lru)")
    p.add_argument("--shapes", nargs="+", choices=["audio-1000", "copy"], help="only these shapes (default both)")
    p.add_argument("--no-profile", action="store_true", help="skip the whole-profile wall time")
    p.add_argument("--profile-seeds", type=positive_int, default=OverheadOptions.profile_seeds,
                   help=f"seeds of the whole audio paper profile run (default {OverheadOptions.profile_seeds})")
    p.add_argument("--profile-steps", type=positive_int, default=None,
                   help="training steps of that run (default: the profile's 2000)")
    p.add_argument("--stack-seeds", type=positive_int, default=OverheadOptions.stack_seeds,
                   help="seeds of the same profile run again with --stack, the stacked row (default "
                   f"{OverheadOptions.stack_seeds}: the profile's 600 runs, not scaled)")
    common_arguments(p, "two architectures, a few steps, a 5-run profile (seconds): checks the tool")


def command_line(argv: list[str]) -> str:
    return "cwbench " + shlex.join(argv)


def kernels_options(args: argparse.Namespace, command: str) -> KernelsOptions:
    return KernelsOptions(device=args.device, quick=args.quick, out=args.out, repeats=args.repeats,
                          min_time=args.min_time, shapes=tuple(args.shapes or ()), full=args.full,
                          memory=not args.no_memory, command=command)


def store_options(args: argparse.Namespace, command: str) -> StoreOptions:
    return StoreOptions(sizes=tuple(args.sizes or ()), quick=args.quick, out=args.out, command=command)


def interference_options(args: argparse.Namespace, command: str) -> InterferenceOptions:
    return InterferenceOptions(repeats=args.repeats, quick=args.quick, out=args.out, command=command)


def overhead_options(args: argparse.Namespace, command: str) -> OverheadOptions:
    return OverheadOptions(quick=args.quick, out=args.out, repeats=args.repeats, archs=tuple(args.archs or ()),
                           shapes=tuple(args.shapes or ()), profile=not args.no_profile,
                           profile_seeds=args.profile_seeds, profile_steps=args.profile_steps or 0,
                           stack_seeds=args.stack_seeds, command=command)


# ---------------------------------------------------------------------------------------
# Commands (torch and pandas load here, after the arguments are checked)


def cmd_kernels(args) -> int:
    from bench.perf.kernels import run

    return run(kernels_options(args, command_line(args.argv)))


def cmd_store(args) -> int:
    from bench.perf.store import run

    return run(store_options(args, command_line(args.argv)))


def cmd_interference(args) -> int:
    from bench.perf.interference import run

    return run(interference_options(args, command_line(args.argv)))


def cmd_overhead(args) -> int:
    from bench.perf.overhead import run

    return run(overhead_options(args, command_line(args.argv)))


def cmd_speed(args) -> int:
    """`cwbench speed`: `cwbench perf kernels` under its old name; its old tool flags say where the tools went."""
    moved = [tool for tool, given in (("interference", args.interference), ("store", args.store or args.sizes))
             if given]
    if moved:
        said = " and ".join(f"`cwbench speed --{tool}` is now `cwbench perf {tool}`" for tool in moved)
        raise UserInputError(said + (": two tools, run each on its own" if len(moved) > 1 else
                                     f": run that (its options: `cwbench perf {moved[0]} --help`)"))
    print("note: `cwbench speed` is now `cwbench perf kernels` (the old name goes in the next release)",
          file=sys.stderr, flush=True)
    from bench.perf.kernels import run

    # recorded as the command that will still reproduce the tables
    return run(kernels_options(args, command_line(["perf", "kernels", *args.argv[1:]])))


def add_commands(sub) -> None:
    """`perf` and its four tools, and the `speed` alias, on the top-level subparsers."""
    perf = sub.add_parser("perf", help="measure the tool itself: kernels, results store, interference, run overhead "
                          "(writes results/speed/)", description=PERF_DESCRIPTION)
    tools = perf.add_subparsers(dest="perf_tool", required=True, metavar="{kernels,store,interference,overhead}")
    for name, help_, description, arguments, command in (
            ("kernels", "CW-RNN backends and rnn/gru implementations vs torch's RNN/LSTM/GRU kernels",
             KERNELS_DESCRIPTION, kernels_arguments, cmd_kernels),
            ("store", "the results store's cost by size", STORE_DESCRIPTION, store_arguments, cmd_store),
            ("interference", "an LSTM run fresh and after CW-RNN runs in one process (CPU)",
             INTERFERENCE_DESCRIPTION, interference_arguments, cmd_interference),
            ("overhead", "a suite run against the bare training loop; a whole profile's wall time (CPU)",
             OVERHEAD_DESCRIPTION, overhead_arguments, cmd_overhead)):
        tool = tools.add_parser(name, help=help_, description=description)
        arguments(tool)
        tool.set_defaults(func=command)

    speed = sub.add_parser("speed", help="the old name of `cwbench perf kernels` (kept for one release)",
                           description=SPEED_DESCRIPTION)
    kernels_arguments(speed)
    # the tools that were flags: accepted only to say where they went
    speed.add_argument("--interference", action="store_true", help=argparse.SUPPRESS)
    speed.add_argument("--store", action="store_true", help=argparse.SUPPRESS)
    speed.add_argument("--sizes", nargs="+", help=argparse.SUPPRESS)
    speed.set_defaults(func=cmd_speed)
