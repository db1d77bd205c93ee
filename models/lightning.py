"""One LightningModule for every (architecture, task) pair.

The recurrent layer is any module with nn.RNN's calling convention; a linear readout
is applied at every step and the task adapter decides which steps are scored. The
Trainer (max steps, validation, loggers) is configured from the outside. The module steps
its optimizer itself (Lightning's manual optimization): zero the gradients, backward, clip
the gradient norm, step: the same operations in the same order as Lightning's automatic
loop, without its closure and per-step hooks, which cost more than a small run's step.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from torch import nn


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adam"  # "adam" or "sgd" (SGD with Nesterov momentum, the paper's)
    lr: float = 1e-3
    momentum: float = 0.95
    weight_decay: float = 0.0
    clip: float = 0.0  # gradient-norm clipping before each step; 0: none


OPTIMIZERS = {
    "adam": lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay),
    "sgd": lambda params, c: torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, nesterov=c.momentum > 0, weight_decay=c.weight_decay
    ),
}


class SequenceModel(pl.LightningModule):
    """`loss_reduction` ("mean" or "sum" over a sequence's scored steps) is the task loss's;
    with `track_train_metric` the task's primary metric on the training batches is logged
    per epoch as train/<metric> (what early stopping on the training error watches).
    `initial_state` (models.initialisation.InitialState), if given, makes the layer's h0 of
    each batch; without it the layer starts from zeros."""

    def __init__(self, rnn: nn.Module, task, optim: OptimConfig, loss_reduction: str = "mean",
                 track_train_metric: bool = False, initial_state: nn.Module | None = None):
        super().__init__()
        self.rnn = rnn
        self.readout = nn.Linear(rnn.hidden_size, task.output_size)
        self.initial_state = initial_state  # registered after the readout: a run without it is unchanged
        self.task = task
        self.optim = optim
        self.loss_reduction = loss_reduction
        self.track_train_metric = track_train_metric
        self.test_artifacts: dict[str, list] = {}
        self.automatic_optimization = False
        self.last_train_loss: torch.Tensor | None = None  # the last training step's, for a learning curve
        self.step_offset = 0  # the steps trained before this fit (a run resumed from its checkpoint)

    def __setattr__(self, name, value):
        # Lightning sets _current_fx_name around every hook call, dozens of times a step: a plain
        # attribute, so it skips nn.Module's checks for parameters, buffers and submodules
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.initial_state is None:
            outputs, _ = self.rnn(x)
        else:
            outputs, _ = self.rnn(x, self.initial_state(len(x)))
        return self.readout(outputs)

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()  # Lightning's wrapper: its step counts the global step
        y_hat = self(batch["x"])
        loss = self.task.loss(y_hat, batch, self.loss_reduction)
        if not torch.isfinite(loss):
            raise Diverged(f"training loss became {loss.item()} at step {self.step_offset + self.global_step}")
        self.last_train_loss = loss.detach()
        if self.logger is not None:  # Lightning's self.log is most of a small run's step time: only for a logger
            self.log("train/loss", loss, batch_size=len(batch["x"]))
        if self.track_train_metric:
            with torch.no_grad():
                value = self.task.metrics(y_hat, batch)[self.task.primary_metric]
            self.log(f"train/{self.task.primary_metric}", value, on_step=False, on_epoch=True,
                     batch_size=len(batch["x"]))
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.optim.clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.optim.clip, gradient_clip_algorithm="norm")
        optimizer.step()
        return loss

    def _evaluate(self, batch, stage: str):
        y_hat = self(batch["x"])
        metrics = self.task.metrics(y_hat, batch)
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, batch_size=len(batch["x"]))
        return y_hat

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        y_hat = self._evaluate(batch, "test")
        for key, values in self.task.artifacts(y_hat, batch).items():
            self.test_artifacts.setdefault(key, []).extend(values)
        if batch_idx == 0 and self.logger is not None:
            self.task.log_media(self.logger, y_hat, batch, tag="test")

    def on_test_epoch_start(self):
        self.test_artifacts = {}

    def configure_optimizers(self):
        return OPTIMIZERS[self.optim.optimizer](self.parameters(), self.optim)
