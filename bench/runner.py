"""Runs a resolved suite: one Lightning training per run, each finished run written to
the results store before the next starts, runs already in the store skipped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping

from bench import provenance
from bench.files import atomic_write
from bench.interrupt import Interrupted
from bench.store import ResultsStore
from bench.suite import run_id
from models.counting import count_parameters
from models.errors import UserInputError
from models.lightning import Diverged, OptimConfig, SequenceModel
from models.registry import ModelSpec, build_rnn, freeze_input_weights, implementation, initialise

for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
    logging.getLogger(name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*is smaller than the logging interval.*")
warnings.filterwarnings("ignore", ".*treespec.*")  # pytorch-lightning internals on torch 2.13


class CurveRecorder(pl.Callback):
    """Keeps the learning curve in the run record (the store, not wandb, is the record)."""

    def __init__(self):
        self.points: list[dict] = []

    def on_validation_end(self, trainer, pl_module):
        point = {"step": trainer.global_step}
        point.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))})
        self.points.append(point)


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def recurrence_backend(rnn, task, device: str, batch_size: int = 1) -> str:
    """The implementation that runs the recurrence on the run's training batches
    (models.registry.implementation), asked with a batch of their size."""
    return implementation(rnn, torch.empty(batch_size, 1, task.input_size, device=device))


def build_model(config: dict, task, cw_backend: str = "auto") -> SequenceModel:
    """The run's network, initialised as its config says (seeded by the caller)."""
    train = config["train"]
    spec = ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["model"].items()})
    # cw_backend (--cw-backend) picks the CW-RNN's implementation; rnn and gru run auto
    rnn = build_rnn(spec, task.input_size, cw_backend if spec.arch == "cwrnn" else "auto")
    if task.zero_input:
        freeze_input_weights(rnn)
    optim = OptimConfig(train["optimizer"], train["lr"], train["momentum"])
    model = SequenceModel(rnn, task, optim, train["loss_reduction"], track_train_metric=train["patience"] > 0)
    initialise(model.rnn, model.readout, train["init_std"], train["lstm_forget_bias"], train["bias_init"])
    return model


def make_trainer(train: dict, task, device: str, logger, progress: bool, callbacks: list) -> pl.Trainer:
    """By steps (an endless stream of batches, validated every val_every steps), or by epochs
    over the task's finite training set (validated once per epoch), with early stopping on
    the training metric when train.patience is set."""
    common = dict(accelerator=device, devices=1, num_sanity_val_steps=0, gradient_clip_val=train["clip"] or None,
                  deterministic=True, logger=logger if logger is not None else False, enable_checkpointing=False,
                  enable_progress_bar=progress, enable_model_summary=False, callbacks=callbacks)
    if not train["epochs"]:
        return pl.Trainer(max_steps=train["steps"], val_check_interval=train["val_every"],
                          check_val_every_n_epoch=None, log_every_n_steps=max(1, min(50, train["steps"] // 20)),
                          **common)
    per_epoch = task.epoch_batches(train["batch_size"])
    return pl.Trainer(max_epochs=train["epochs"], check_val_every_n_epoch=1, reload_dataloaders_every_n_epochs=1,
                      log_every_n_steps=max(1, min(50, per_epoch)), **common)


def train_one(config: dict, task, device: str, logger=None, progress: bool = False,
              cw_backend: str = "auto", evaluate: str = "test") -> dict:
    """Train one run; returns status, metrics, curve and artifacts (never raises for a
    diverged or crashed run: the sweep goes on and the record says what happened).

    The metrics are those of the test set, or with evaluate="val" those of the final
    validation (what tuning scores: it never looks at the test set)."""
    train = config["train"]
    pl.seed_everything(config["seed"], workers=True, verbose=False)
    model = build_model(config, task, cw_backend)
    effective = count_parameters(model)
    if effective != config["params"]:
        raise AssertionError(f"closed-form count {config['params']} != built count {effective} for {config['arch']}")
    curve = CurveRecorder()
    callbacks: list = [curve]
    stopper = None
    if train["patience"]:
        stopper = EarlyStopping(monitor=f"train/{task.primary_metric}", patience=train["patience"],
                                mode="max" if task.higher_is_better else "min", check_on_train_epoch_end=True)
        callbacks.append(stopper)
    trainer = make_trainer(train, task, device, logger, progress, callbacks)
    if train["epochs"]:
        data = task.datamodule(train["batch_size"], config["seed"], 0, by_epoch=True)
    else:
        data = task.datamodule(train["batch_size"], config["seed"], train["steps"])
    result = {"status": "ok", "reason": "", "metrics": {}, "artifacts": {}}
    try:
        trainer.fit(model, datamodule=data)
        if evaluate == "test":
            trainer.test(model, datamodule=data, verbose=False)
        else:
            trainer.validate(model, datamodule=data, verbose=False)
    except Diverged as err:
        result.update(status="diverged", reason=str(err))
    else:
        prefix = f"{evaluate}/"
        metrics = {k.removeprefix(prefix): float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith(prefix)}
        if not all(math.isfinite(v) for v in metrics.values()):
            result.update(status="diverged", reason=f"non-finite {evaluate} metrics {metrics}")
        elif task.primary_metric not in metrics:  # e.g. no evaluation batches: never an ok run without a number
            result.update(status="failed", reason=f"the {evaluate} data gave no {task.primary_metric}")
        result.update(metrics=metrics, artifacts=model.test_artifacts if evaluate == "test" else {})
    result["learned"] = task.learned(result["metrics"]) if result["status"] == "ok" else False
    result["curve"] = curve.points
    result["steps_trained"] = trainer.global_step
    if train["epochs"]:
        result["epochs_trained"] = trainer.current_epoch
        result["stopped"] = "patience" if stopper is not None and stopper.stopped_epoch > 0 else "cap"
    else:
        result["stopped"] = "steps"
    result["effective_params"] = effective
    result["backend"] = recurrence_backend(rnn=model.rnn, task=task, device=device, batch_size=train["batch_size"])
    return result


def varying_params(runs) -> list[str]:
    """The task parameters that differ between runs of a sweep: what names a run's setting."""
    values: dict[str, set] = {}
    for config, _ in runs:
        for key, value in config["task_params"].items():
            values.setdefault(key, set()).add(repr(value))
    return [key for key, seen in values.items() if len(seen) > 1]


def describe(config: dict, shown: list[str]) -> str:
    setting = "".join(f" {k}={config['task_params'][k]}" for k in shown if k in config["task_params"])
    return f"{config['task']} {config['arch']} budget={config['budget']}{setting} seed={config['seed']}"


def check_clean_tree(results_dir: Path, allow_dirty: bool) -> bool:
    """Runs stored under the repository's results/ are the ones people cite: they must come
    from committed code. Returns whether the tree is dirty (allowed: the records say so)."""
    changed = provenance.uncommitted_code()
    if changed and provenance.publishes(results_dir) and not allow_dirty:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise UserInputError(
            f"uncommitted changes outside results/ ({shown}): commit them first, so that the stored runs name "
            "the code that made them, or pass --allow-dirty for an experiment (each record is then marked dirty), "
            "or write to another folder with --results DIR"
        )
    return bool(changed)


def run_suite(runs, results_dir: Path, *, device: str = "auto", wandb: bool = False, progress: bool = False,
              command: str = "", cw_backend: str = "auto", log=print, store_name: str = "runs.jsonl",
              evaluate: str = "test", allow_dirty: bool = False) -> dict:
    """Runs what is missing from the store (results_dir/<task>/<store_name>); returns counts
    by status. `evaluate` "val" scores the final validation instead of the test set (tuning)."""
    dirty = check_clean_tree(results_dir, allow_dirty)
    device = pick_device(device)
    stores: dict[str, tuple[ResultsStore, set[str]]] = {}
    todo = []
    for config, task in runs:
        if task.name not in stores:  # read each store once, not once per run
            store = ResultsStore(Path(results_dir) / task.name / store_name)
            store.check_writable()  # before anything trains: a run that cannot be stored is lost work
            stores[task.name] = (store, store.finished_ids())
        store, finished = stores[task.name]
        rid = run_id(config)
        if rid not in finished:
            todo.append((rid, config, task, store))
    counts = {"ok": 0, "diverged": 0, "failed": 0, "skipped": len(runs) - len(todo)}
    log(f"{len(runs)} runs in the suite, {counts['skipped']} already in the store, {len(todo)} to run on {device}")
    setting_keys = varying_params(runs)
    # the same for every run of the sweep: taken once (git and package metadata are not free)
    sweep = {"git_commit": provenance.git_commit(), "versions": provenance.versions(), "command": command,
             "evaluated_on": evaluate, **({"dirty": True} if dirty else {})}
    try:
        for number, (rid, config, task, store) in enumerate(todo, start=1):
            log(f"[{number}/{len(todo)}] {describe(config, setting_keys)} ...", end=" ", flush=True)
            logger = None
            if wandb:
                from bench.wandb_log import make_logger  # wandb is imported only when asked for

                logger = make_logger(config, rid, setting_keys, task=task, device=device, cw_backend=cw_backend,
                                     command=command, evaluate=evaluate, dirty=dirty)
            started = time.perf_counter()
            try:
                result = train_one(config, task, device, logger, progress, cw_backend, evaluate)
            except Exception as err:  # a crashed run is recorded, and the sweep goes on
                result = {"status": "failed", "reason": f"{type(err).__name__}: {err}", "metrics": {},
                          "artifacts": {}, "curve": [], "effective_params": None, "backend": cw_backend,
                          "learned": None}
            wall = time.perf_counter() - started
            record = {
                "run_id": rid, **config, "status": result.pop("status"), "reason": result.pop("reason"), **result,
                "sources": task.sources(), "baselines": task.baselines(), "primary_metric": task.primary_metric,
                "higher_is_better": task.higher_is_better, "wall_time_s": round(wall, 3),
                "device": provenance.device_name(device), "machine": provenance.machine(device),
                "date": provenance.now(), **sweep,
            }
            try:
                store.put(record)
            except OSError as err:
                kept = keep_unsaved(record)
                where = (f"the finished run is kept in {kept}: append that line to {store.path} (`cat {kept} >> "
                         f"{store.path}`) once it can be written" if kept else "the finished run could not be kept")
                raise UserInputError(f"could not write {store.path} ({err.strerror or err}); {where}") from None
            if logger is not None:
                from bench.wandb_log import finish

                finish(logger, record)
            counts[record["status"]] += 1
            shown = record["metrics"].get(task.primary_metric)
            log(f"{record['status']}" + (f" {task.primary_metric}={shown:.4g}" if shown is not None else "")
                + (" (not learned)" if record["learned"] is False and record["status"] == "ok" else "")
                + (f" ({record['reason']})" if record["reason"] else "") + f" [{wall:.1f}s]")
    except KeyboardInterrupt:  # outside Lightning (which turns its own into SystemExit): the same stop
        raise Interrupted(signal.SIGINT, sum(counts[s] for s in STORED)) from None
    except Interrupted as stop:
        stop.stored = sum(counts[s] for s in STORED)
        raise
    return counts


STORED = ("ok", "diverged", "failed")


def keep_unsaved(record: dict) -> Path | None:
    """A finished run that the store could not take, written where it can be recovered
    (the cache folder, else the temporary folder); None if nowhere would take it."""
    for folder in (Path(os.environ.get("CWBENCH_CACHE", Path.home() / ".cache" / "cwbench")) / "unsaved",
                   Path(tempfile.gettempdir()) / "cwbench-unsaved"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{record['task']}-{record['run_id']}.jsonl"
            atomic_write(path, json.dumps(record, sort_keys=True) + "\n")
            return path
        except OSError:
            continue
    return None
