"""`cwbench perf overhead` (`nox -s perf -- overhead`): what a suite run costs beyond its training.

For each architecture of the audio paper profile, at two shapes,
- audio-1000: the audio task, budget 1000, its one 320-step sequence, batch 1 (Adam 3e-3,
  gradient clip 1.0: the recipe of issue 20's measurement);
- copy: the copying task, delay 100, batch 64, budget 10k (the standard profile's recipe);
it times, in this one process and back to back (so that the ratio sees the same machine load),
(a) a bare loop: the same model (bench.sweep.training.build_model, the same backend), the same
    task's batches (its datamodule, drawn before the clock starts), and per step forward,
    readout, loss, backward, gradient clip and optimizer step, after warm-up steps;
(b) the same run through `bench.sweep.training.train_one`, what a sweep's worker runs: model
    building, Lightning's loop, validation every val_every steps, the test, the record;
and writes the time per step of each, and (b) / (a), in wall time and in the process's CPU
time (less moved by other work on the machine), to <out>/overhead_cpu.md and .csv. With
several repeats the two alternate and the medians are kept. Where the run stacks (audio: every
architecture), also (c) its group of 5 seeds x the profile's 5 targets trained stacked
(bench.sweep.stacked.train_stacked, what a `--stack` sweep's worker runs), per run and step,
and (c) / (a).

Then the wall time of a whole profile through `cwbench run` in a subprocess (the audio paper
profile's rnn, lstm, gru and three CW-RNNs, at --seeds 1 by default, at one learning rate 1e-3
for all, 2 workers x 1 thread, into a temporary results folder): the figure a sweep sees,
start-up and workers included; the md also gives it scaled to 5 seeds. And the same profile
with `--stack` (bench/sweep/stacked.py: each architecture x budget's seeds x targets as one
stacked computation), at --stack-seeds seeds (default 5: the 600 runs themselves, not scaled,
since a group's size is seeds x targets and scaling would misstate it).

Runs pin 1 torch thread (bench/sweep/threads.py), as each worker of a 2-worker sweep does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.perf.options import OverheadOptions
from bench.perf.tables import cpu_header, header_lines, write_tables
from bench.sweep.stacked import STACKED_TASKS, why_not_stacked

ARCHS = ["rnn", "lstm", "gru", "cwrnn/exponential", "indrnn", "phased_lstm", "mingru", "lru"]
# (task, profile, budget, task params, train overrides, timed steps); phased_lstm is slow: fewer steps
SHAPES = {
    "audio-1000": dict(task="audio", profile="paper", budget=1000, params={"target": "synth:chord"},
                       train=dict(optimizer="adam", lr=0.003, clip=1.0, val_every=100), steps=1000),
    "copy": dict(task="copy", profile="standard", budget=10_000, params={"delay": 100, "variable_delay": False},
                 train={}, steps=200),
}
SLOW = {"phased_lstm": 0.25}  # fraction of the steps for a slow architecture (time is per step)
QUICK = dict(archs=["rnn", "cwrnn/exponential"], steps={"audio-1000": 20, "copy": 5},
             params={"copy": {"eval_batches": 1, "eval_batch_size": 16}})
WARMUP = 20  # bare-loop steps before its clock starts (caches, compiled kernels, allocator)
STACK_GROUP_SEEDS = 5  # a stacked group of the per-step table: 5 seeds x the profile's 5 targets, as in the profile
BARE_BATCHES = 16  # distinct batches the bare loop cycles through (the copy task draws a fresh one per step)

# the whole profile: `cwbench run audio --profile paper` at --seeds N, over the six
# architectures of issue 20's "600 runs" (4 budgets x 5 targets x 5 seeds each); the newer ones (indrnn,
# phased_lstm, ...) loop over time in Python at batch 1: their bare loop alone is tens of ms a step
PROFILE = dict(task="audio", profile="paper", workers=2, threads=1,
               archs=["rnn", "lstm", "gru", "cwrnn/exponential", "cwrnn/fibonacci", "cwrnn/dense"])
# every architecture trains at this one rate: the committed tuning of the paper profile covers only some
# architectures, and a run's time hardly depends on its rate
FIXED_LR = 0.001
QUICK_PROFILE = dict(PROFILE, archs=["rnn"], budgets=[100], steps=10)  # 5 runs: one per target


def one_run(shape: dict, arch: str, steps: int, extra_params: dict | None = None):
    """(config, task) of one run: the suite's profile with the shape's overrides, seed 0."""
    from bench.suite.suites import load_profile, load_suite, resolve

    profile = load_profile(load_suite(shape["task"]), shape["profile"])
    profile.archs, profile.budgets, profile.seeds = [arch], [shape["budget"]], 1
    profile.task_params = {**profile.task_params, **shape["params"], **(extra_params or {})}
    val_every = min(steps, shape["train"].get("val_every", profile.train.val_every))
    profile.train = dataclasses.replace(profile.train, **{**shape["train"], "steps": steps, "val_every": val_every})
    return resolve(shape["task"], shape["profile"], profile)[0]


def bare_loop(config, task, steps: int) -> tuple[float, float, str]:
    """Wall and CPU seconds per step of the bare loop on the run's model, data and optimizer,
    and the backend it ran on."""
    import pytorch_lightning as pl
    import torch

    from bench.sweep.training import build_model, recurrence_backend

    train = config.train
    pl.seed_everything(config.seed, workers=True, verbose=False)
    model = build_model(config, task)
    backend = recurrence_backend(model.rnn, task, "cpu", train["batch_size"])
    model.train()
    data = task.datamodule(train["batch_size"], config.seed, BARE_BATCHES)
    batches = list(data.train_dataloader())
    optimizer = model.configure_optimizers()
    parameters = [p for p in model.parameters() if p.requires_grad]

    def step(batch):
        loss = task.loss(model(batch["x"]), batch, train["loss_reduction"])
        optimizer.zero_grad()
        loss.backward()
        if train["clip"]:
            torch.nn.utils.clip_grad_norm_(parameters, train["clip"])
        optimizer.step()

    for i in range(WARMUP):
        step(batches[i % len(batches)])
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(steps):
        step(batches[i % len(batches)])
    return (time.perf_counter() - started) / steps, (time.process_time() - cpu) / steps, backend


def suite_run(config, task) -> tuple[float, float, dict]:
    """Wall and CPU seconds per training step of the whole run through train_one, and its result."""
    from bench.sweep.training import train_one

    started, cpu = time.perf_counter(), time.process_time()
    result = train_one(config, task, "cpu")
    steps = config.train["steps"]
    return (time.perf_counter() - started) / steps, (time.process_time() - cpu) / steps, result


def group_runs(shape: dict, arch: str, steps: int, seeds: int, extra_params: dict | None = None) -> list:
    """(config, task) of the shape's run at `seeds` seeds on every target of its profile: one
    stacked group (seeds x targets runs of one architecture and budget), as `--stack` forms it."""
    from bench.suite.suites import load_profile, load_suite

    profile = load_profile(load_suite(shape["task"]), shape["profile"])
    params = {k: v for k, v in shape["params"].items() if k != "target"}
    runs = []
    for target in profile.task_params["target"]:
        config, task = one_run(dict(shape, params={**params, "target": target}), arch, steps, extra_params)
        runs += [(dataclasses.replace(config, seed=seed), task) for seed in range(seeds)]
    return runs


def stacked_run(runs: list) -> tuple[float, float]:
    """Wall and CPU seconds per run and training step of the group trained stacked (what one
    run of a `--stack` sweep costs), its build, validation and test included."""
    from bench.sweep.stacked import train_stacked

    configs, tasks = zip(*runs)
    started, cpu = time.perf_counter(), time.process_time()
    results = train_stacked(list(configs), list(tasks), "cpu")
    steps = len(results) * configs[0].train["steps"]
    return (time.perf_counter() - started) / steps, (time.process_time() - cpu) / steps


def measure_shapes(options: OverheadOptions) -> list[dict]:
    archs = list(options.archs) or (QUICK["archs"] if options.quick else ARCHS)
    rows = []
    for name, shape in SHAPES.items():
        if options.shapes and name not in options.shapes:
            continue
        for arch in archs:
            steps = QUICK["steps"][name] if options.quick else max(10, round(shape["steps"] * SLOW.get(arch, 1)))
            extra = QUICK["params"].get(name) if options.quick else None
            config, task = one_run(shape, arch, steps, extra)
            bare, suite, bare_cpu, suite_cpu, backend, result = [], [], [], [], "", {}
            for repeat in range(options.repeats):
                # alternate which goes first, so that a drift in load falls on both
                for kind in (("bare", "suite") if repeat % 2 == 0 else ("suite", "bare")):
                    if kind == "bare":
                        seconds, cpu, backend = bare_loop(config, task, steps)
                        bare.append(seconds)
                        bare_cpu.append(cpu)
                    else:
                        seconds, cpu, result = suite_run(config, task)
                        suite.append(seconds)
                        suite_cpu.append(cpu)
            row = dict(shape=name, arch=arch, params=config.params, steps=steps, batch_size=config.train["batch_size"],
                       val_every=config.train["val_every"], backend=backend, suite_backend=result["backend"],
                       repeats=options.repeats, bare_ms=1e3 * statistics.median(bare),
                       suite_ms=1e3 * statistics.median(suite), bare_cpu_ms=1e3 * statistics.median(bare_cpu),
                       suite_cpu_ms=1e3 * statistics.median(suite_cpu), status=result["status"])
            row["ratio"] = row["suite_ms"] / row["bare_ms"]
            row["cpu_ratio"] = row["suite_cpu_ms"] / row["bare_cpu_ms"]
            if shape["task"] in STACKED_TASKS and not why_not_stacked(config):
                group = group_runs(shape, arch, steps, 1 if options.quick else STACK_GROUP_SEEDS, extra)
                timed = [stacked_run(group) for _ in range(options.repeats)]
                row["stacked_runs"] = len(group)
                row["stacked_ms"] = 1e3 * statistics.median(t[0] for t in timed)
                row["stacked_cpu_ms"] = 1e3 * statistics.median(t[1] for t in timed)
                row["stacked_ratio"] = row["stacked_ms"] / row["bare_ms"]
            rows.append(row)
            print(f"  {name} {arch}: bare {row['bare_ms']:.2f} ms/step, suite {row['suite_ms']:.2f} ms/step, "
                  f"suite/bare {row['ratio']:.2f}, in CPU time {row['cpu_ratio']:.2f} ({backend})", flush=True)
    return rows


def profile_command(spec: dict, seeds: int, steps: int, results: Path, stack: bool = False) -> list[str]:
    argv = ["run", spec["task"], "--profile", spec["profile"], "--seeds", str(seeds), "--workers",
            str(spec["workers"]), "--threads", str(spec["threads"]), "--results", str(results), "--no-leaderboard",
            "--allow-dirty"] + (["--stack"] if stack else [])
    argv += ["--train", f"lr={FIXED_LR}"]
    if steps:
        argv += ["--steps", str(steps)]
    if spec.get("archs"):
        argv += ["--archs", *spec["archs"]]
    if spec.get("budgets"):
        argv += ["--budgets", *map(str, spec["budgets"])]
    return argv


def whole_profile(options: OverheadOptions, stack: bool = False) -> dict:
    """Wall time of `cwbench run` over the profile into a temporary results folder (with `stack`:
    `--stack`, at options.stack_seeds seeds, 2 for --quick)."""
    spec = QUICK_PROFILE if options.quick else PROFILE
    steps = spec.get("steps", options.profile_steps)
    seeds = (2 if options.quick else options.stack_seeds) if stack else options.profile_seeds
    repo = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="cwbench-overhead-") as tmp:
        results = Path(tmp) / "results"
        argv = profile_command(spec, seeds, steps, results, stack)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True, env=env,
                              cwd=repo)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"cwbench {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        store = results / spec["task"] / "runs.jsonl"
        records = [json.loads(line) for line in store.read_text().splitlines() if line.strip()]
    shown = [a if not a.startswith(str(results)) else "<tmp>" for a in ["cwbench", *argv]]
    return dict(command=" ".join(shown), seeds=seeds, runs=len(records),
                ok=sum(r.get("status") == "ok" for r in records),
                steps=steps or "the profile's", wall_s=wall, per_run_s=wall / max(1, len(records)))


def markdown(rows: list[dict], profile: dict | None, header: dict, stacked: dict | None = None) -> str:
    lines = header_lines("Run overhead: a suite run against the bare training loop (cpu, 1 thread)", header)
    lines += ["", "## Per step", "",
              "`bare`: forward, readout, loss, backward, clip, optimizer step on the run's own model and batches, "
              "after warm-up; `suite`: the whole run through `train_one` (build, Lightning's loop, validation every "
              "`val every` steps, test) divided by its training steps; `suite / bare`: the overhead factor "
              "(target: at most 1.5), in wall time and in the process's CPU time (less moved by other work on "
              "the machine). `stacked`: where the run stacks (`--stack`: the audio task's runs of every "
              "architecture), the same run trained in its group of `group` runs (the seeds "
              "x targets of one architecture and budget, as a stacked sweep forms it), the group's whole wall "
              "time (build, training, validation, test) per run and step; `stacked / bare`: that against one "
              "run's bare loop.",
              "",
              "| shape | arch | params | batch | steps | val every | backend | bare ms/step | suite ms/step | "
              "suite / bare | CPU: bare ms/step | CPU: suite ms/step | CPU: suite / bare | group | "
              "stacked ms/run-step | stacked / bare | status |",
              "|" + "---|" * 17]

    def optional(r: dict, key: str, form: str) -> str:
        value = r.get(key)
        return "—" if value is None or value != value else format(value, form)  # NaN: a row of a csv

    for r in rows:
        lines.append(f"| {r['shape']} | {r['arch']} | {r['params']} | {r['batch_size']} | {r['steps']} | "
                     f"{r['val_every']} | {r['backend']} | {r['bare_ms']:.3f} | {r['suite_ms']:.3f} | "
                     f"{r['ratio']:.2f} | {r['bare_cpu_ms']:.3f} | {r['suite_cpu_ms']:.3f} | {r['cpu_ratio']:.2f} | "
                     f"{optional(r, 'stacked_runs', '.0f')} | {optional(r, 'stacked_ms', '.3f')} | "
                     f"{optional(r, 'stacked_ratio', '.2f')} | {r['status']} |")
    if profile is not None:
        lines += ["", "## A whole profile", "",
                  "| command | seeds | runs | ok | steps | wall s | wall s per run |", "|---|---|---|---|---|---|---|",
                  f"| `{profile['command']}` | {profile['seeds']} | {profile['runs']} | {profile['ok']} | "
                  f"{profile['steps']} | {profile['wall_s']:.0f} | {profile['per_run_s']:.2f} |"]
        if stacked is not None:  # the same profile with --stack: measured at its own seeds, not scaled
            lines.append(f"| `{stacked['command']}` | {stacked['seeds']} | {stacked['runs']} | {stacked['ok']} | "
                         f"{stacked['steps']} | {stacked['wall_s']:.0f} | {stacked['per_run_s']:.2f} |")
        lines += ["", f"At 5 seeds (the profile's 600 runs of these six architectures) that is about "
                  f"{profile['wall_s'] * 5 / profile['seeds'] / 60:.1f} min (the wall time times 5 / seeds)"
                  + (f"; with --stack, {stacked['runs']} runs at {stacked['seeds']} seeds took "
                     f"{stacked['wall_s'] / 60:.1f} min (measured, not scaled: a stacked group is seeds x targets "
                     "runs of one architecture and budget)." if stacked is not None else ".")]
    lines += ["", "## Notes", "",
              "- audio-1000: the audio paper profile's architectures at budget 1000 on synth:chord with Adam 3e-3 "
              "and clip 1.0; copy: the copy standard profile (delay 100, batch 64, Adam 1e-3, clip 1.0) at budget "
              "10k. phased_lstm trains a quarter of the steps (times are per step).",
              "- Both kinds run in one process, back to back (alternating with several repeats): compare the ratio, "
              "not the milliseconds, across machines or loads.",
              "- The whole profile runs in a subprocess into a temporary results folder, every architecture at lr "
              f"{FIXED_LR:g} (a run's time hardly depends on its rate); its wall time includes start-up, workers and "
              "the store."]
    return "\n".join(lines) + "\n"


def run(options: OverheadOptions) -> int:
    from bench.sweep.threads import pin_threads

    pin_threads(1)  # before torch loads: as a sweep's worker does
    options.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = measure_shapes(options)
    profile = whole_profile(options) if options.profile else None
    stacked = whole_profile(options, stack=True) if options.profile else None
    for done in (profile, stacked):
        if done is not None:
            print(f"  {done['command']}: {done['runs']} runs in {done['wall_s']:.0f} s", flush=True)
    elapsed = time.perf_counter() - started
    header = cpu_header(options.command, elapsed)
    stem = options.out / ("overhead_quick_cpu" if options.quick else "overhead_cpu")
    table = rows + ([dict(shape="profile", **profile)] if profile is not None else []) + (
        [dict(shape="profile stacked", **stacked)] if stacked is not None else [])
    write_tables(stem, table, header, markdown(rows, profile, header, stacked))
    print(f"wrote {stem}.md, .csv ({elapsed:.0f} s)", flush=True)
    return 0
