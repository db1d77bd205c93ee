"""Runs a resolved suite: one Lightning training per run, each finished run written to
the results store before the next starts, runs already in the store skipped.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from bench import provenance
from bench.store import ResultsStore
from bench.suite import run_id
from models.clockwork import ClockworkRNN
from models.counting import count_parameters
from models.lightning import Diverged, OptimConfig, SequenceModel
from models.registry import ModelSpec, build_rnn, freeze_input_weights, initialise

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


def recurrence_backend(rnn, task, device: str) -> str:
    """The implementation that ran the recurrence: a CW-RNN backend, or torch's kernel."""
    if not isinstance(rnn, ClockworkRNN):
        return "torch"
    return rnn.resolved_backend(torch.empty(1, 1, task.input_size, device=device))


def train_one(config: dict, task, device: str, logger=None, progress: bool = False,
              cw_backend: str = "auto") -> dict:
    """Train one run; returns status, metrics, curve and artifacts (never raises for a
    diverged or crashed run: the sweep goes on and the record says what happened)."""
    train = config["train"]
    pl.seed_everything(config["seed"], workers=True, verbose=False)
    model_config = config["model"]
    spec = ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in model_config.items()})
    rnn = build_rnn(spec, task.input_size, cw_backend)
    if task.zero_input:
        freeze_input_weights(rnn)
    optim = OptimConfig(train["optimizer"], train["lr"], train["momentum"])
    model = SequenceModel(rnn, task, optim)
    initialise(model.rnn, model.readout, train["init_std"], train["lstm_forget_bias"])
    effective = count_parameters(model)
    if effective != config["params"]:
        raise AssertionError(f"closed-form count {config['params']} != built count {effective} for {config['arch']}")
    curve = CurveRecorder()
    trainer = pl.Trainer(
        accelerator=device, devices=1, max_steps=train["steps"], val_check_interval=train["val_every"],
        check_val_every_n_epoch=None, num_sanity_val_steps=0, gradient_clip_val=train["clip"] or None,
        deterministic=True, logger=logger if logger is not None else False, enable_checkpointing=False,
        enable_progress_bar=progress, enable_model_summary=False, callbacks=[curve],
        log_every_n_steps=max(1, min(50, train["steps"] // 20)),
    )
    data = task.datamodule(train["batch_size"], config["seed"], train["steps"])
    result = {"status": "ok", "reason": "", "metrics": {}, "artifacts": {}}
    try:
        trainer.fit(model, datamodule=data)
        trainer.test(model, datamodule=data, verbose=False)
    except Diverged as err:
        result.update(status="diverged", reason=str(err))
    else:
        metrics = {k.removeprefix("test/"): float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("test/")}
        if not all(math.isfinite(v) for v in metrics.values()):
            result.update(status="diverged", reason=f"non-finite test metrics {metrics}")
        result.update(metrics=metrics, artifacts=model.test_artifacts)
    result["curve"] = curve.points
    result["effective_params"] = effective
    result["backend"] = recurrence_backend(rnn, task, device)
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


def run_suite(runs, results_dir: Path, *, device: str = "auto", wandb: bool = False, progress: bool = False,
              command: str = "", cw_backend: str = "auto", log=print) -> dict:
    """Runs what is missing from the store; returns counts by status."""
    device = pick_device(device)
    stores: dict[str, tuple[ResultsStore, set[str]]] = {}
    todo = []
    for config, task in runs:
        if task.name not in stores:  # read each store once, not once per run
            store = ResultsStore(Path(results_dir) / task.name / "runs.jsonl")
            stores[task.name] = (store, store.finished_ids())
        store, finished = stores[task.name]
        rid = run_id(config)
        if rid not in finished:
            todo.append((rid, config, task, store))
    counts = {"ok": 0, "diverged": 0, "failed": 0, "skipped": len(runs) - len(todo)}
    setting_keys = varying_params(runs)
    log(f"{len(runs)} runs in the suite, {counts['skipped']} already in the store, {len(todo)} to run on {device}")
    for number, (rid, config, task, store) in enumerate(todo, start=1):
        log(f"[{number}/{len(todo)}] {describe(config, setting_keys)} ...", end=" ", flush=True)
        logger = None
        if wandb:
            from bench.wandb_log import make_logger  # wandb is imported only when asked for

            logger = make_logger(config, rid, setting_keys)
        started = time.perf_counter()
        try:
            result = train_one(config, task, device, logger, progress, cw_backend)
        except Exception as err:  # a crashed run is recorded, and the sweep goes on
            result = {"status": "failed", "reason": f"{type(err).__name__}: {err}", "metrics": {},
                      "artifacts": {}, "curve": [], "effective_params": None, "backend": cw_backend}
        wall = time.perf_counter() - started
        record = {
            "run_id": rid, **config, "status": result.pop("status"), "reason": result.pop("reason"), **result,
            "sources": task.sources(), "baselines": task.baselines(), "primary_metric": task.primary_metric,
            "higher_is_better": task.higher_is_better, "wall_time_s": round(wall, 3),
            "device": provenance.device_name(device), "git_commit": provenance.git_commit(),
            "versions": provenance.versions(), "date": provenance.now(), "command": command,
        }
        store.put(record)
        if logger is not None:
            from bench.wandb_log import finish

            finish(logger, record)
        counts[record["status"]] += 1
        shown = record["metrics"].get(task.primary_metric)
        log(f"{record['status']}" + (f" {task.primary_metric}={shown:.4g}" if shown is not None else "")
            + (f" ({record['reason']})" if record["reason"] else "") + f" [{wall:.1f}s]")
    return counts
