"""The `cwbench` command line: list, run, tune, leaderboard, speed.

This module imports nothing heavy: `--help`, `list` and mistyped arguments answer at once.
torch, Lightning, pandas... are imported inside the commands that run, tune, tabulate or
plot, after the arguments have been checked (tests/test_cli.py checks the import graph).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import shlex
import signal
import sys
from pathlib import Path

from models import names
from models.errors import UserInputError

DEFAULT_RESULTS = Path("results")
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def cmd_list(args) -> None:
    from bench.suite import load_profile, load_suite, suite_names
    from models.schedules import SCHEDULES, periods_for

    print("architectures (use cwrnn/<schedule> for a CW-RNN with that schedule):")
    for name, description in names.ARCHITECTURES.items():
        print(f"  {name:<8} {description}")
    print("schedules (periods shown for g=6):")
    for name in SCHEDULES:
        print(f"  {name:<13} {periods_for(name, 6)}")
    print(f"  {'exponential:B':<13} base B, e.g. exponential:3 -> {periods_for('exponential:3', 6)}")
    print(f"  {'1,4,16,64':<13} an explicit list of periods (fixes g)")
    print("tasks and profiles:")
    for task in suite_names():
        suite = load_suite(task)
        for profile in suite["profiles"]:
            p = load_profile(suite, profile)
            print(f"  {task:<11} {profile:<8} {len(p.archs)} archs x budgets {p.budgets} x {p.seeds} seeds"
                  f" | {p.task_params}")
    print(f"optimizers: {', '.join(names.OPTIMIZERS)}")


def profile_from_args(args):
    """The suite and its profile with the command line's overrides applied, checked as far
    as that can be done without torch."""
    from bench.suite import load_profile, load_suite, validate_train

    suite = load_suite(args.task)
    profile = load_profile(suite, args.profile)
    if args.archs:
        profile.archs = args.archs
    if args.budgets:
        profile.budgets = args.budgets
    if args.tolerance is not None:
        profile.match = dataclasses.replace(profile.match, tolerance=args.tolerance)
    if args.seeds is not None:
        profile.seeds = args.seeds
    if args.steps is not None:
        profile.train = dataclasses.replace(profile.train, steps=args.steps,
                                            val_every=min(profile.train.val_every, args.steps))
    if args.train:
        from bench.suite import TrainConfig, _dataclass_from

        profile.train = _dataclass_from(TrainConfig, {**dataclasses.asdict(profile.train), **dict(args.train)},
                                        "--train")
    for key, value in args.task_param:
        profile.task_params[key] = value
    if args.target:
        profile.task_params["target"] = args.target
    if args.timit_root:
        profile.task_params["timit_root"] = str(args.timit_root)
    for label in profile.archs:  # a mistyped name is said now, not after seconds of imports
        names.parse_arch(label)
    validate_train(profile.train)
    return suite, profile


def cmd_run(args) -> int:
    suite, profile = profile_from_args(args)
    from bench.suite import resolve
    from bench.tuning import needs_tuning, tuned_rates

    tuned = tuned_rates(args.task, args.profile, profile, args.results) if needs_tuning(profile) else None
    runs = resolve(args.task, args.profile, profile, tuned)  # task and budget errors: still without torch
    from bench.leaderboard import build_leaderboard
    from bench.runner import run_suite

    command = "cwbench " + shlex.join(args.argv) if args.command is None else args.command
    counts = run_suite(runs, args.results, device=args.device, wandb=args.wandb, progress=args.progress,
                       command=command, cw_backend=args.cw_backend, allow_dirty=args.allow_dirty)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    if not args.no_leaderboard:
        build_leaderboard(suite["task"], args.results)
    return 0


def cmd_tune(args) -> int:
    suite, profile = profile_from_args(args)
    from bench.store import ResultsStore
    from bench.tuning import TUNING_STORE, choose, tuning_runs

    runs = tuning_runs(args.task, args.profile, profile)  # task and budget errors: still without torch
    from bench.runner import run_suite

    command = "cwbench " + shlex.join(args.argv) if args.command is None else args.command
    counts = run_suite(runs, args.results, device=args.device, progress=args.progress, command=command,
                       cw_backend=args.cw_backend, store_name=TUNING_STORE, evaluate="val",
                       allow_dirty=args.allow_dirty)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    chosen = choose(runs, ResultsStore(args.results / args.task / TUNING_STORE).load())
    for arch, lr in chosen.items():
        print(f"chosen learning rate: {arch} {lr:g}")
    return 0


def cmd_verify(args) -> int:
    import tempfile

    from bench.verify import verify

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix=f"cwbench-verify-{args.task}-"))
    return verify(args.task, args.results, scratch, args.sample, args.profile)


def cmd_leaderboard(args) -> int:
    from bench.suite import load_suite, suite_names

    if args.task:
        load_suite(args.task)  # an unknown name is said before pandas is imported
    tasks = [args.task] if args.task else [t for t in suite_names() if (args.results / t / "runs.jsonl").exists()]
    if not tasks:
        raise UserInputError(f"no stored runs under {args.results}: run `cwbench run TASK` first")
    from bench.leaderboard import build_leaderboard

    for task in tasks:
        build_leaderboard(task, args.results)
    return 0


def cmd_speed(args) -> int:
    if args.interference:
        from bench.interference import run
    else:
        from bench.speed import run

    return run(args)


def _task_param(text: str):
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE")
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):  # YAML 1.1 reads 1e-3 (no dot) as a string; people mean the number
        with contextlib.suppress(ValueError):
            return key, float(parsed) if NUMBER.fullmatch(parsed) else parsed
    return key, parsed


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 and 1 (0.1 = within 10%)")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="cwbench", description="Clockwork Bench: recurrent architectures at matched "
                                  "parameter budgets, with reproducible leaderboards.")
    sub = top.add_subparsers(dest="command_name", required=True)

    sub.add_parser("list", help="architectures, schedules, tasks and profiles").set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="run a task's suite (skips runs already stored), then write its leaderboard")
    tune = sub.add_parser("tune", help="tune each architecture's learning rate on the profile's grid "
                          "(validation data, never the test set); stored in results/<task>/tuning.jsonl")
    for command in (run, tune):
        suite_arguments(command)
    run.add_argument("--wandb", action="store_true", help="mirror each run to Weights & Biases (WANDB_MODE honoured)")
    run.add_argument("--no-leaderboard", action="store_true", help="do not rebuild the leaderboard afterwards")
    run.set_defaults(func=cmd_run)
    tune.set_defaults(func=cmd_tune)

    check = sub.add_parser("verify", help="re-run a sample of each leaderboard row and say whether it reproduces "
                           "(bitwise, within float noise, and statistically)")
    check.add_argument("task", help="task name (see `cwbench list`)")
    check.add_argument("--sample", type=_positive_int, default=1, help="reruns per row (default 1: its first seed)")
    check.add_argument("--profile", help="only this profile's rows (default: all)")
    check.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the store to check (default results/)")
    check.add_argument("--scratch", type=Path, help="where the reruns go (default: a new temporary folder)")
    check.set_defaults(func=cmd_verify)

    board = sub.add_parser("leaderboard", help="rebuild tables and plots from stored runs")
    board.add_argument("task", nargs="?", help="one task (default: every task with stored runs)")
    board.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    board.set_defaults(func=cmd_leaderboard)

    speed = sub.add_parser("speed", help="speed benchmark of CW-RNN backends vs library RNNs (see --help)",
                           description=SPEED_DESCRIPTION)
    speed_arguments(speed)
    speed.set_defaults(func=cmd_speed)
    return top


def suite_arguments(run: argparse.ArgumentParser) -> None:
    """What `run` and `tune` share: the suite and its overrides, where results go, how runs run."""
    run.add_argument("task", help="task name (see `cwbench list`)")
    run.add_argument("--profile", default="quick", help="suite profile (see `cwbench list`; default quick)")
    run.add_argument("--archs", nargs="+", help="architectures, e.g. rnn lstm cwrnn/exponential cwrnn/1,4,16")
    run.add_argument("--budgets", nargs="+", type=_positive_int, help="parameter budgets")
    run.add_argument("--seeds", type=_positive_int, help="number of seeds (0..N-1)")
    run.add_argument("--tolerance", type=_fraction, help="how far (a fraction) a matched size may miss the budget "
                     "(default: the profile's, e.g. 0.1)")
    run.add_argument("--steps", type=_positive_int, help="override the profile's training steps")
    run.add_argument("--param", dest="task_param", action="append", type=_task_param, default=[],
                     metavar="KEY=VALUE", help="override a task parameter (YAML value; a list is a grid axis)")
    run.add_argument("--train", action="append", type=_task_param, default=[], metavar="KEY=VALUE",
                     help="override a training setting of the profile, e.g. lr=0.01 or loss_reduction=sum")
    run.add_argument("--target", action="append", metavar="PATH",
                     help="audio task: a WAV/FLAC/OGG file to generate (repeatable; replaces the built-in targets)")
    run.add_argument("--timit-root", type=Path, help="timit task: the LDC TIMIT root (default: $TIMIT_ROOT)")
    run.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results directory (default results/)")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--cw-backend", default="auto", choices=["auto", *names.BACKENDS],
                     help="CW-RNN implementation (default auto: the fastest for the device); recorded per run")
    run.add_argument("--progress", action="store_true", help="show Lightning's progress bar")
    run.add_argument("--allow-dirty", action="store_true",
                     help="store runs under results/ from a tree with uncommitted code (an experiment: each record "
                          "is marked dirty); without it such a tree is refused")
    run.add_argument("--command", help=argparse.SUPPRESS)  # the reproduce command to record (set by nox)


SPEED_DESCRIPTION = ("How fast each CW-RNN backend is next to the library RNN, LSTM and GRU kernels: "
                     "writes <out>/speed_<device>.md, .csv and .png (see bench/speed.py).")


def speed_arguments(p: argparse.ArgumentParser) -> None:
    """`cwbench speed`'s options; here, not in bench/speed.py, so that --help needs no torch."""
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: the CPU, and the GPU too when there is one")
    p.add_argument("--quick", action="store_true", help="a tiny grid (seconds): checks the script, not speed")
    p.add_argument("--out", type=Path, default=Path("results/speed"), help="output folder (default results/speed)")
    p.add_argument("--repeats", type=int, default=5, help="minimum timed rounds per shape (default 5)")
    p.add_argument("--min-time", type=float, default=3.0, help="cheap shapes repeat rounds for this many seconds")
    p.add_argument("--shapes", nargs="+", help="only these shapes or families (e.g. audio b64)")
    p.add_argument("--full", action="store_true", help="on CPU too, the full B=256 T=1024 shape (slow)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--interference", action="store_true", help="instead: an LSTM run's time in a fresh process "
                   "and after CW-RNN runs in the same process, on 1 and 2 threads (bench/interference.py)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv
    from bench.interrupt import Interrupted, stop_on_signals

    try:
        with stop_on_signals():
            return args.func(args) or 0
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        name = signal.Signals(stop.signum).name
        print(f"interrupted by {name}: {stop.stored} runs stored by this command; rerun the same command to "
              "resume", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:  # outside a sweep
        print("interrupted: finished runs are in the results store; rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
