"""The `cwbench` command line: list, run, tune, verify, leaderboard, site, export, import, perf
(and speed, its old name).

This module imports nothing heavy: `--help`, `list` and mistyped arguments answer at once.
torch, Lightning, pandas... are imported inside the commands that run, tune, tabulate or
plot, after the arguments have been checked (tests/test_cli.py checks the import graph).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import shlex
import sys
from pathlib import Path

from bench.arguments import fraction, positive_float, positive_int, task_param
from bench.perf.commands import add_commands as add_perf_commands
from models import names
from models.errors import UserInputError

DEFAULT_RESULTS = Path("results")


def cmd_list(args) -> None:
    from bench.suite.suites import load_profile, load_suite, suite_names
    from models.plugins import load_all
    from models.schedules import SCHEDULES, periods_for

    load_all(args.include)  # installed plugins and --include files (models/plugins.py): checked, then listed

    print("architectures (use cwrnn/<schedule> for a CW-RNN with that schedule):")
    width = max(map(len, names.ARCHITECTURES))
    for name, description in names.ARCHITECTURES.items():
        print(f"  {name:<{width}} {description}")
    print("schedules (periods shown for g=6):")
    for name in SCHEDULES:
        print(f"  {name:<13} {periods_for(name, 6)}")
    print(f"  {'exponential:B':<13} base B, e.g. exponential:3 -> {periods_for('exponential:3', 6)}")
    print(f"  {'1,4,16,64':<13} an explicit list of periods (fixes g)")
    print(f"  {'random:SEED':<13} 1 and distinct log-uniform draws up to 2^(g-1), e.g. random:0 -> "
          f"{periods_for('random:0', 6)}")
    print("  options, e.g. cwrnn/exponential@wiring=full: @wiring=paper|full|reversed (who reads whom), "
          "@start=1 (the clock's t counted from 1), @g=G (G modules)")
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
    from bench.suite.suites import load_profile, load_suite, validate_train
    from models.plugins import load_all

    suite = load_suite(args.task)
    profile = load_profile(suite, args.profile)
    load_all(args.include)  # before the names are read: a plugin's architectures join the table
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
    if profile.search is not None:
        search = {"trials": args.trials, "studies": args.studies, "steps": args.steps if profile.search.steps else None}
        profile.search = dataclasses.replace(profile.search, **{k: v for k, v in search.items() if v is not None})
    elif args.trials or args.studies:
        raise UserInputError(f"profile {args.profile} of task {args.task} has no search: --trials and --studies "
                             "apply to a profile with one (e.g. --profile tuned)")
    if args.train:
        from bench.suite.suites import TrainConfig, _dataclass_from

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
    check_suite_size(profile)
    return suite, profile


RUN_BYTES = 64 << 10  # what one run of a suite costs the driver's memory, with room to spare (a resolved config,
MAX_RUNS = 1_000_000  # its job and record); and the most runs one command takes, whatever the memory


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_suite_size(profile) -> None:
    """The number of runs, from the profile's counts, before a single one is enumerated: a
    suite this machine could not even list (e.g. --seeds 99999999999) is refused at once."""
    settings = 1
    for value in profile.task_params.values():
        settings *= len(value) if isinstance(value, list) else 1
    runs = settings * len(profile.budgets) * len(profile.archs) * profile.seeds
    memory = available_memory()
    most = MAX_RUNS if memory is None else max(1, min(MAX_RUNS, memory // RUN_BYTES))
    if runs > most:
        raise UserInputError(f"the suite has {runs:,} runs ({len(profile.archs)} archs x {len(profile.budgets)} "
                             f"budgets x {profile.seeds:,} seeds x {settings:,} task settings): one command takes "
                             f"at most {most:,} on this machine; give fewer --seeds, --budgets, --archs or "
                             "--param values")


def cmd_run(args) -> int:
    suite, profile = profile_from_args(args)
    from bench.suite.search import tuned_settings
    from bench.suite.suites import resolve

    tuned = tuned_settings(args.task, args.profile, profile, args.results)
    runs = resolve(args.task, args.profile, profile, tuned)  # task and budget errors: still without torch
    from bench.report.leaderboard import build_leaderboard
    from bench.sweep.runner import run_suite

    counts = run_suite(runs, args.results, sweep_options(args, runs, wandb=args.wandb))
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    if not args.no_leaderboard:
        build_leaderboard(suite["task"], args.results)
    return failed_status(counts)


def sweep_options(args, runs, **fixed):
    """How `run` or `tune` sweeps, from its arguments: `--backend ARCH=NAME` becomes the
    implementation of each run of that architecture."""
    from bench.sweep.runner import SweepOptions

    implementations = {config.run_id: args.backends[config.model["arch"]] for config, _ in runs
                       if config.model["arch"] in args.backends}
    command = "cwbench " + shlex.join(args.argv) if args.command is None else args.command
    return SweepOptions(device=args.device, launch=args.launch, implementations=implementations, command=command,
                        allow_dirty=args.allow_dirty, progress=args.progress, stack=args.stack, **fixed)


def failed_status(counts: dict) -> int:
    """0 where every run this command trained is stored ok or diverged; 1, with one line on
    stderr, where any failed (the reasons are in the sweep's summary above)."""
    if not counts.get("failed"):
        return 0
    trained = sum(counts.get(status, 0) for status in ("ok", "diverged", "failed"))
    print(f"error: {counts['failed']} of the {trained} runs trained by this command failed (their reasons are "
          "above; each is stored as failed): fix the cause, then rerun the same command to train them again",
          file=sys.stderr)
    return 1


def cmd_tune(args) -> int:
    suite, profile = profile_from_args(args)
    if profile.search is not None:
        from bench.sweep.search import run_search

        return run_search(args.task, args.profile, profile, args.results,
                          lambda runs: sweep_options(args, runs, store_name="tuning.jsonl", evaluate="val"))
    from bench.store.results import ResultsStore
    from bench.suite.tuning import TUNING_STORE, choose, tuning_runs

    runs = tuning_runs(args.task, args.profile, profile)  # task and budget errors: still without torch
    from bench.sweep.runner import run_suite

    counts = run_suite(runs, args.results, sweep_options(args, runs, store_name=TUNING_STORE, evaluate="val"))
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    chosen = choose(runs, ResultsStore(args.results / args.task / TUNING_STORE).load())
    for arch, lr in chosen.items():
        print(f"chosen learning rate: {arch} {lr:g}")
    return failed_status(counts)


def cmd_verify(args) -> int:
    import tempfile

    from bench.report.verify import verify

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix=f"cwbench-verify-{args.task}-"))
    # plugins are loaded with each recorded command, after verify has pinned the thread count
    return verify(args.task, args.results, scratch, functools.partial(read_run_command, include=args.include),
                  args.sample, args.profile, alpha=args.alpha, workers=args.workers)


def read_run_command(words: list[str], include=()):
    """A recorded `cwbench run` command as (its profile's name, the profile with the overrides).
    `include`: plugin files to load besides the command's own; a recorded --include file that is
    gone is left out when a plugin of its name is loaded (moved, or installed since)."""
    from models.plugins import LOADED

    args = parser().parse_args(words)
    given = {*LOADED, *(Path(p).stem for p in include)}
    args.include = [*include, *(p for p in args.include if p.is_file() or p.stem not in given)]
    return args.profile, profile_from_args(args)[1]


def cmd_leaderboard(args) -> int:
    from bench.suite.suites import load_suite, suite_names

    if args.task:
        load_suite(args.task)  # an unknown name is said before pandas is imported
    tasks = [args.task] if args.task else [t for t in suite_names() if (args.results / t / "runs.jsonl").exists()]
    if not tasks:
        raise UserInputError(f"no stored runs under {args.results}: run `cwbench run TASK` first")
    from bench.report.leaderboard import build_leaderboard

    for task in tasks:
        build_leaderboard(task, args.results, wandb=args.wandb)
    return 0


def cmd_export(args) -> int:
    from bench.suite.suites import load_suite

    load_suite(args.task)  # an unknown name is said before anything is read
    from bench.store.bundles import export_bundle
    from bench.sweep import provenance

    environment = {"commit": provenance.git_commit(), "machine": provenance.machine("cpu"),
                   "versions": provenance.versions()}
    manifest = export_bundle(args.task, args.results, args.output, environment, archs=args.archs,
                             profile=args.profile)
    print(f"wrote {args.output}: {manifest['record_count']} records of task {args.task} "
          f"(commit {environment['commit']}); import it with `cwbench import {args.output}`")
    return 0


def cmd_import(args) -> int:
    from bench.store.bundles import import_bundle, read_bundle
    from bench.suite.suites import load_suite

    bundle = read_bundle(args.bundle)
    load_suite(bundle.task)  # a bundle of a task this checkout does not have is refused
    import_bundle(bundle, args.results)
    print(f"rebuild the leaderboard with `cwbench leaderboard {bundle.task}"
          + ("" if args.results == DEFAULT_RESULTS else f" --results {args.results}") + "`")
    return 0


def cmd_site(args) -> int:
    from bench.report.site import build_site  # pandas and Jinja2 only when building

    build_site(args.results, args.out)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="cwbench", description="Clockwork Bench: recurrent architectures at matched "
                                  "parameter budgets, with reproducible leaderboards.")
    sub = top.add_subparsers(dest="command_name", required=True)

    listing = sub.add_parser("list", help="architectures (plugins included), schedules, tasks and profiles")
    include_argument(listing)
    listing.set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="run a task's suite (skips runs already stored), then write its leaderboard")
    tune = sub.add_parser("tune", help="run a profile's search (the same trials for every architecture; `tuned`) or "
                          "its learning-rate grid (`paper`), on validation data, never the test set; stored in "
                          "results/<task>/tuning.jsonl")
    for command in (run, tune):
        suite_arguments(command)
    run.add_argument("--wandb", action="store_true", help="mirror each run to Weights & Biases (WANDB_MODE honoured)")
    run.add_argument("--no-leaderboard", action="store_true", help="do not rebuild the leaderboard afterwards")
    run.set_defaults(func=cmd_run)
    tune.set_defaults(func=cmd_tune)

    check = sub.add_parser("verify", help="re-run a sample of each leaderboard row and say whether it reproduces "
                           "(bitwise, within float noise, and statistically)")
    check.add_argument("task", help="task name (see `cwbench list`)")
    check.add_argument("--sample", type=positive_int, default=1, help="reruns per row: its first K seeds, and new "
                       "seeds beyond the committed ones (default 1)")
    check.add_argument("--alpha", type=fraction, default=0.05, help="the chance that a faithful reproduction fails "
                       "the command (family-wise, Holm over rows; default 0.05)")
    check.add_argument("--workers", type=positive_int, help="local worker processes (default: one per core for "
                       "small runs)")
    check.add_argument("--profile", help="only this profile's rows (default: all)")
    check.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the store to check (default results/)")
    check.add_argument("--scratch", type=Path, help="where the reruns go (default: a new temporary folder)")
    include_argument(check)
    check.set_defaults(func=cmd_verify)

    board = sub.add_parser("leaderboard", help="rebuild tables and plots from stored runs")
    board.add_argument("task", nargs="?", help="one task (default: every task with stored runs)")
    board.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    board.add_argument("--wandb", action="store_true", help="also log each profile's table and figures to a W&B run "
                       "of job type leaderboard (WANDB_MODE and WANDB_PROJECT honoured)")
    board.set_defaults(func=cmd_leaderboard)

    site = sub.add_parser("site", help="build the static site of every leaderboard (HTML; works from file://)")
    site.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the stores to read (default results/)")
    site.add_argument("--out", type=Path, default=Path("site"), help="the folder to build in (default site/; "
                      "a folder built before is replaced)")
    site.set_defaults(func=cmd_site)
    export = sub.add_parser("export", help="write a task's stored runs to a bundle (.tar.gz) that `cwbench import` "
                            "adds to another results folder, marked external")
    export.add_argument("task", help="task name (see `cwbench list`)")
    export.add_argument("--archs", nargs="+", help="only these architectures' runs (default: all stored)")
    export.add_argument("--profile", help="only this profile's runs (default: all)")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="BUNDLE.tar.gz",
                        help="the bundle to write")
    export.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where the runs are stored "
                        "(default results/)")
    export.set_defaults(func=cmd_export)

    bring = sub.add_parser("import", help="add the runs of a bundle from `cwbench export` to a results store, "
                           "checked, marked external until `cwbench verify` reproduces them")
    bring.add_argument("bundle", type=Path, help="a .tar.gz written by `cwbench export`")
    bring.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the results folder to add them to "
                       "(default results/)")
    bring.set_defaults(func=cmd_import)

    add_perf_commands(sub)  # perf kernels, store, interference, overhead, and speed (bench/perf/commands.py)
    return top


def suite_arguments(run: argparse.ArgumentParser) -> None:
    """What `run` and `tune` share: the suite and its overrides, where results go, how runs run."""
    run.add_argument("task", help="task name (see `cwbench list`)")
    run.add_argument("--profile", default="quick", help="suite profile (see `cwbench list`; default quick)")
    run.add_argument("--archs", nargs="+", help="architectures, e.g. rnn lstm cwrnn/exponential cwrnn/1,4,16")
    run.add_argument("--budgets", nargs="+", type=positive_int, help="parameter budgets")
    run.add_argument("--seeds", type=positive_int, help="number of seeds (0..N-1)")
    run.add_argument("--tolerance", type=fraction, help="how far (a fraction) a matched size may miss the budget "
                     "(default: the profile's, e.g. 0.1)")
    run.add_argument("--steps", type=positive_int, help="override the profile's training steps (a search's too)")
    run.add_argument("--trials", type=positive_int, help="a profile with a search: trials per study (default: the "
                     "profile's; every architecture gets the same)")
    run.add_argument("--studies", type=positive_int, help="a profile with a search: studies per architecture")
    run.add_argument("--param", dest="task_param", action="append", type=task_param, default=[],
                     metavar="KEY=VALUE", help="override a task parameter (YAML value; a list is a grid axis)")
    run.add_argument("--train", action="append", type=task_param, default=[], metavar="KEY=VALUE",
                     help="override a training setting of the profile, e.g. lr=0.01 or loss_reduction=sum")
    run.add_argument("--target", action="append", metavar="PATH",
                     help="audio task: a WAV/FLAC/OGG file to generate (repeatable; replaces the built-in targets)")
    run.add_argument("--timit-root", type=Path, help="timit task: the LDC TIMIT root (default: $TIMIT_ROOT)")
    include_argument(run)
    run.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results directory (default results/)")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--backend", dest="backend", action="append", type=task_param, default=[],
                     metavar="ARCH=NAME", help="how an architecture's recurrence is computed, e.g. rnn=torch or "
                     "cwrnn=modular (default auto: the fastest measured for the shape and device; see `cwbench list`); "
                     "recorded per run")
    run.add_argument("--cw-backend", choices=["auto", *names.BACKENDS], help="the same as --backend cwrnn=NAME")
    run.add_argument("--progress", action="store_true", help="show Lightning's progress bar (one run at a time)")
    run.add_argument("--stack", action="store_true", help="train runs that differ only in seed and task data "
                     "(batch-1, step-based: audio) as one stacked computation per group: each gets its own result "
                     "to float rounding, many times faster on a CPU (README: Stacked runs)")
    where = run.add_argument_group("where runs train (README: Sweeps at scale)")
    where.add_argument("--launcher", default="local", choices=["local", "ray", "slurm"],
                       help="local: this machine (default); ray: tasks on a Ray cluster; slurm: a submitit job array")
    where.add_argument("--workers", type=positive_int, help="local: worker processes (default: one per core for "
                       "small models, 1 for large; 1 trains in this process)")
    where.add_argument("--threads", type=positive_int, help="torch threads per run (default: cores / workers; "
                       "Ray and SLURM: the CPUs each task declares)")
    where.add_argument("--ray-address", metavar="HOST:PORT", help="ray: the cluster's head (from `ray start --head`)")
    where.add_argument("--ray-cpus", type=positive_float, default=1.0, help="ray: CPUs each run declares (default 1)")
    where.add_argument("--slurm", action="append", type=task_param, default=[], metavar="KEY=VALUE",
                       help="slurm: partition, time (minutes per run), cpus_per_task, gpus_per_task, mem_gb, account, "
                       "qos, constraint, array_parallelism, folder, cluster (slurm|local)")
    where.add_argument("--slurm-config", type=Path, metavar="FILE", help="slurm: a YAML mapping of the same settings "
                       "(flags win)")
    run.add_argument("--allow-dirty", action="store_true",
                     help="store runs under results/ from a tree with uncommitted code (an experiment: each record "
                          "is marked dirty); without it such a tree is refused")
    run.add_argument("--command", help=argparse.SUPPRESS)  # the reproduce command to record (set by nox)


def include_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument("--include", action="append", type=Path, default=[], metavar="FILE.py",
                         help="a plugin file whose ARCHITECTURES dict adds architectures (repeatable; "
                         "docs/extending.md); installed plugins are always loaded")


def implementations(pairs, cw_backend) -> dict:
    """--backend ARCH=NAME (and --cw-backend NAME) as architecture -> implementation, checked."""
    chosen = dict(pairs)
    if cw_backend:
        chosen["cwrnn"] = cw_backend
    for arch, name in chosen.items():
        names.check_implementation(arch, name)
    return chosen


def launch_options(args):
    """--launcher and its settings, checked before anything is imported or trained."""
    from bench.sweep.launchers import LaunchOptions

    slurm = {}
    if args.slurm_config:
        import yaml

        try:
            slurm = yaml.safe_load(args.slurm_config.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise UserInputError(f"cannot read --slurm-config {args.slurm_config} ({err}): give a YAML mapping of "
                                 "SLURM settings") from None
        if not isinstance(slurm, dict):
            raise UserInputError(f"--slurm-config {args.slurm_config} is not a YAML mapping of SLURM settings "
                                 "(e.g. partition: gpu)")
    slurm.update(dict(args.slurm))
    options = LaunchOptions(args.launcher, args.workers, args.threads, args.ray_address, args.ray_cpus, slurm)
    options.check()
    return options


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv
    from bench.sweep.interrupt import Interrupted, stop_on_signals

    try:
        if hasattr(args, "launcher"):  # run and tune
            args.backends = implementations(args.backend, args.cw_backend)
            args.launch = launch_options(args)
        with stop_on_signals():
            return args.func(args) or 0
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"interrupted by {stop.says()}: {stop.stored} runs stored by this command; rerun the same command to "
              "resume", file=sys.stderr)
        return stop.status()
    except KeyboardInterrupt:  # outside a sweep
        print("interrupted: finished runs are in the results store; rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
