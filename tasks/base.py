"""The contract between a task and the rest of the suite.

A task adapter owns its data (a LightningDataModule), decides which time steps of
the per-step readout are scored (loss and metrics), and names its primary metric.
The LightningModule in `models` applies one linear readout at every step and hands
the result to the adapter, so any architecture trains on any task with no per-pair
code.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def cache_root() -> Path:
    """Where Clockwork Bench keeps what it can rebuild or must not lose in between: $CWBENCH_CACHE
    if set, else ~/.cache/cwbench. Tasks keep their extracted features here (<task>/), sweeps the
    finished runs a store refused (unsaved/), Ray's driver log and submitit's job folders."""
    root = os.environ.get("CWBENCH_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "cwbench"


class Task(abc.ABC):
    """One benchmark task, fully configured (constructor arguments are its params)."""

    #: name used in tables, plots, the results path and wandb (``results/<name>/``)
    name: str
    #: metric the leaderboard ranks by, and whether higher is better
    primary_metric: str
    higher_is_better: bool
    #: per-step input features and readout units
    input_size: int
    output_size: int

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The resolved task parameters; they enter the run config and the run id."""

    @abc.abstractmethod
    def datamodule(self, batch_size: int, seed: int, train_steps: int):
        """A LightningDataModule whose batches are dicts with at least ``x`` (B, T, I).

        ``train_dataloader`` must yield at least ``train_steps`` batches in total
        (it may cycle); ``val_dataloader`` and ``test_dataloader`` are finite. A task with
        a finite training set (``epoch_batches``) also takes ``by_epoch=True``: then
        ``train_dataloader`` gives one epoch, the trainer's current one.
        """

    @abc.abstractmethod
    def horizon(self) -> int:
        """T_max: the most time steps a sequence of this task has (the chrono initialisation
        spreads its gates' time scales up to it). Cheap: no data loaded beyond what training
        the task loads anyway."""

    def epoch_batches(self, batch_size: int) -> int | None:
        """Batches in one pass over a finite training set; None for a task whose training
        data are an endless stream (it trains by steps only)."""
        return None

    def validates_on_test(self) -> bool:
        """Whether the validation loader gives the test set (then validation only draws learning
        curves, and nothing may be chosen on it: train.select best_val is refused)."""
        return False

    def for_tuning(self) -> Task:
        """The task that learning-rate tuning trains and scores on its *validation* data:
        the validation loader must never give the test set. Here: the task itself (its
        validation data are already apart from the test set); tasks whose validation
        loader is the test set return a variant with a held-out part of the training data."""
        return self

    @abc.abstractmethod
    def loss(self, y_hat: torch.Tensor, batch: dict, reduction: str = "mean") -> torch.Tensor:
        """Scalar training loss from the readout at every step, ``y_hat`` (B, T, O).

        ``reduction`` says how the scored time steps of a sequence are combined: "mean"
        (the loss per scored step) or "sum" (per sequence; a learning rate then means what
        it means for a per-sequence loss). Sequences are always averaged over the batch."""

    @abc.abstractmethod
    def metrics(self, y_hat: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Scalar metrics of one evaluation batch; averaged over batches by batch size."""

    #: True for a task whose input is all zeros (audio generation): the input weights
    #: then do nothing, are frozen at zero and are not counted as parameters
    zero_input: bool = False

    def sources(self) -> dict[str, Any]:
        """Where the task's data came from; recorded with each run, not part of its id."""
        return {}

    def baselines(self) -> dict[str, float]:
        """Reference values reported beside results (e.g. a memoryless baseline). The entry
        named like the primary metric is the trivial baseline that `learned` compares with."""
        return {}

    #: how far past the trivial baseline the primary metric must get to count as learned
    learn_margin: float = 0.0

    def learned(self, metrics: dict[str, float]) -> bool | None:
        """Did the run beat the trivial baseline by more than `learn_margin`? None when
        there is no metric or no baseline to compare with."""
        value, baseline = metrics.get(self.primary_metric), self.baselines().get(self.primary_metric)
        if value is None or baseline is None:
            return None
        if self.higher_is_better:
            return value > baseline + self.learn_margin
        return value < baseline - self.learn_margin

    def artifacts(self, y_hat: torch.Tensor, batch: dict) -> dict[str, list]:
        """Small JSON-able outputs of one test batch kept in the run record (lists are
        concatenated over batches): generated waveforms, (true, predicted) labels."""
        return {}

    def log_media(self, logger, y_hat: torch.Tensor, batch: dict, tag: str) -> None:
        """Optional wandb media (audio, plots) for one evaluation batch."""

    @staticmethod
    def setting_label(params: dict[str, Any], keys: list[str], x: str | None = None) -> str:
        """A short name for a task setting in plot titles and legends: the values in `params`
        of `keys` (the parameters that differ between the runs a plot shows). `x` is the
        parameter on the plot's x axis, if any (not in `keys`): a name may refer to it.
        Here: key=value, a content hash cut to 8 characters."""
        return ", ".join(f"{k}={str(params[k])[:8] if k == 'sha256' else params[k]}" for k in keys)
