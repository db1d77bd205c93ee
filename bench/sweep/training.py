"""One run, start to end, in whatever process it runs in: build the model its config
describes, train it with Lightning, evaluate it, and say what happened. Nothing here
knows about stores, sweeps or launchers (bench/sweep/runner.py, bench/sweep/launchers/).
"""

from __future__ import annotations

import logging
import math
import warnings

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.trainer.states import TrainerFn

from bench.store.records import RunConfig
from bench.suite.suites import train_setting
from bench.sweep import checkpoints
from models.counting import count_parameters
from models.initialisation import InitialState, initialise_family
from models.lightning import Diverged, OptimConfig, SequenceModel
from models.registry import ModelSpec, build_rnn, freeze_input_weights, implementation, initialise

for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
    logging.getLogger(name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*is smaller than the logging interval.*")
warnings.filterwarnings("ignore", ".*treespec.*")  # pytorch-lightning internals on torch 2.13


class CurveRecorder(pl.Callback):
    """Keeps the learning curve in the run record (the store, not wandb, is the record): at each
    validation, its metrics and, while fitting, the last training step's loss, which the model
    keeps (it goes through Lightning's self.log only for a logger: that costs more than a small
    run's step)."""

    def __init__(self, start: int = 0, points: list[dict] | None = None):
        self.start = start  # the step the fit starts at (a resumed run's checkpoint); its points so far
        self.points: list[dict] = list(points or [])

    def on_validation_end(self, trainer, pl_module):
        point = {"step": self.start + trainer.global_step}
        if trainer.state.fn == TrainerFn.FITTING and pl_module.last_train_loss is not None:
            point["train/loss"] = float(pl_module.last_train_loss)
        point.update({k: float(v) for k, v in trainer.callback_metrics.items()
                      if k.startswith(("val/", "train/")) and k != "train/loss"})
        self.points.append(point)


class BestWeights(pl.Callback):
    """Keeps a copy of the weights at the best validation of the primary metric so far
    (train.select "best_val": a fixed training budget, tested at its best validation point;
    no stopping rule takes part in the ranking)."""

    def __init__(self, metric: str, higher_is_better: bool, start: int = 0, saved: dict | None = None):
        self.metric, self.sign = f"val/{metric}", -1.0 if higher_is_better else 1.0
        self.start = start  # as CurveRecorder's; `saved`: a resumed run's best so far (bench/sweep/checkpoints.py)
        self.best: float | None = saved["value"] if saved else None
        self.step = saved["step"] if saved else 0
        self.state: dict | None = saved["state"] if saved else None

    def on_validation_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(self.metric)
        if value is None or trainer.sanity_checking:
            return
        value = float(value)
        if math.isfinite(value) and (self.best is None or self.sign * value < self.sign * self.best):
            self.best, self.step = value, self.start + trainer.global_step
            self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def recurrence_backend(rnn, task, device: str, batch_size: int = 1) -> str:
    """The implementation that runs the recurrence on the run's training batches
    (models.registry.implementation), asked with a batch of their size."""
    return implementation(rnn, torch.empty(batch_size, 1, task.input_size, device=device))


def build_model(config: RunConfig, task, backend: str = "auto") -> SequenceModel:
    """The run's network, initialised as its config says (seeded by the caller)."""
    train = config.train
    spec = ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.model.items()})
    rnn = build_rnn(spec, task.input_size, backend)
    if task.zero_input:
        freeze_input_weights(rnn)
    optim = OptimConfig(train["optimizer"], train["lr"], train["momentum"], clip=train["clip"] or 0.0)
    initial_state = InitialState.of(spec.arch, spec.hidden_size) if train_setting(train, "learn_h0") else None
    model = SequenceModel(rnn, task, optim, train["loss_reduction"], track_train_metric=train["patience"] > 0,
                          initial_state=initial_state)
    initialise(model.rnn, model.readout, train["init_std"], train["lstm_forget_bias"], train["bias_init"])
    initialise_family(train_setting(train, "init"), model.rnn, task)  # after: "default" changes nothing
    return model


def make_trainer(train: dict, task, device: str, logger, progress: bool, callbacks: list,
                 start: int = 0) -> pl.Trainer:
    """By steps (an endless stream of batches, validated every val_every steps; `start`: the
    steps a resumed run has already trained), or by epochs over the task's finite training
    set (validated once per epoch), with early stopping on the training metric when
    train.patience is set."""
    # gradient clipping: the model's own step (models/lightning.py), at train.clip
    common = dict(accelerator=device, devices=1, num_sanity_val_steps=0, deterministic=True,
                  logger=logger if logger is not None else False, enable_checkpointing=False,
                  enable_progress_bar=progress, enable_model_summary=False, callbacks=callbacks)
    if not train["epochs"]:
        return pl.Trainer(max_steps=train["steps"] - start, val_check_interval=train["val_every"],
                          check_val_every_n_epoch=None, log_every_n_steps=max(1, min(50, train["steps"] // 20)),
                          **common)
    per_epoch = task.epoch_batches(train["batch_size"])
    return pl.Trainer(max_epochs=train["epochs"], check_val_every_n_epoch=1, reload_dataloaders_every_n_epochs=1,
                      log_every_n_steps=max(1, min(50, per_epoch)), **common)


def train_one(config: RunConfig, task, device: str, backend: str = "auto", evaluate: str = "test",
              progress: bool = False, make_logger=None, checkpoint: str | None = None) -> dict:
    """Train one run; returns status, metrics, curve and artifacts (never raises for a
    diverged or crashed run: the sweep goes on and the record says what happened).

    The metrics are those of the test set, or with evaluate="val" those of the final
    validation (what tuning scores: it never looks at the test set). `backend` names the
    implementation of the recurrence ("auto": the fastest for the shape and device);
    `make_logger(backend)`, if given, makes the run's Lightning logger once the model is built.
    `checkpoint`, if given, is the file where a run that trains by steps keeps its progress:
    a run that finds one there goes on from it (bench/sweep/checkpoints.py)."""
    train = config.train
    pl.seed_everything(config.seed, workers=True, verbose=False)
    model = build_model(config, task, backend)
    backend = recurrence_backend(model.rnn, task, device, train["batch_size"])
    logger = make_logger(backend) if make_logger is not None else None
    effective = count_parameters(model)
    if effective != config.params:
        raise AssertionError(f"closed-form count {config.params} != built count {effective} for {config.arch}")
    if train["epochs"]:
        data = task.datamodule(train["batch_size"], config.seed, 0, by_epoch=True)
    else:
        data = task.datamodule(train["batch_size"], config.seed, train["steps"])
    if checkpoint and (train["epochs"] or train["patience"] or not checkpoints.resumable(data.train_dataloader())):
        # by epochs: short runs, and their loader is made anew each epoch; patience: the stopper's count is not kept
        checkpoint = None
    saved = checkpoints.read(checkpoint, config.run_id) if checkpoint else None
    start = saved.step if saved else 0
    if saved:  # the weights now (the optimizer's state once Lightning has made it: Restore)
        model.load_state_dict(saved.model)
    curve = CurveRecorder(start, saved.curve if saved else None)
    callbacks: list = [curve]
    best = None
    if train_setting(train, "select") == "best_val":
        best = BestWeights(task.primary_metric, task.higher_is_better, start, saved.best if saved else None)
        callbacks.append(best)
    stopper = None
    if train["patience"]:
        stopper = EarlyStopping(monitor=f"train/{task.primary_metric}", patience=train["patience"],
                                mode="max" if task.higher_is_better else "min", check_on_train_epoch_end=True)
        callbacks.append(stopper)
    resumed_at = [*saved.resumed_at, start] if saved else []
    if saved:
        callbacks.append(checkpoints.Restore(saved))
    if checkpoint:  # last: it saves what the callbacks before it have recorded at this validation
        callbacks.append(checkpoints.Checkpoints(checkpoint, config.run_id, curve, best, start, resumed_at,
                                                 saved.wall_s if saved else 0.0))
    trainer = make_trainer(train, task, device, logger, progress, callbacks, start)
    model.step_offset = start
    result = {"status": "ok", "reason": "", "metrics": {}, "artifacts": {}}
    try:
        if saved:  # the rest of the stream: batch i of a run is item i of its training data
            trainer.fit(model, train_dataloaders=checkpoints.starting_at(data.train_dataloader(), start),
                        val_dataloaders=data.val_dataloader())
        else:
            trainer.fit(model, datamodule=data)
        if best is not None and best.state is not None:
            model.load_state_dict(best.state)
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
    result["steps_trained"] = start + trainer.global_step
    if train["epochs"]:
        result["epochs_trained"] = trainer.current_epoch
        result["stopped"] = "patience" if stopper is not None and stopper.stopped_epoch > 0 else "cap"
    else:
        result["stopped"] = "steps"
    if best is not None:
        result["selected_step"] = best.step if best.state is not None else start + trainer.global_step
    if resumed_at:
        result["resumed_at"] = resumed_at
        result["wall_time_before_s"] = saved.wall_s  # the caller's wall time adds it: the whole run's
    result["effective_params"] = effective
    result["backend"] = backend
    return result
