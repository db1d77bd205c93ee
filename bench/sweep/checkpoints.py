"""A run's progress on disk, so that a run killed mid-training (a session that ends, a node
taken back) goes on from its last checkpoint in the next invocation, to the same numbers as
a run that was never stopped.

A checkpoint is written at a validation point, at most once every EVERY_S seconds, whole
(bench/store/files.py: temporary file, then rename): the weights, the optimizer's state, the
learning curve so far and the best weights so far (train.select: best_val). Only runs that
train by steps are checkpointed: their batch i is item i of their training data
(tasks/*/data.py), so the rest of the stream starts at the saved step and nothing else
about the run depends on where it stopped. The sweep's driver names the file (one per run,
beside the store) and removes it once the run's record is stored (bench/sweep/runner.py).
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch.utils.data import DataLoader, SequentialSampler, Subset

from bench.store.files import atomic_write

EVERY_S = 120.0  # a killed run loses at most this, plus the steps to the next validation
FORMAT = 1  # what a checkpoint holds; another is not read (the run starts over)

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What a run had reached at a validation point."""

    run_id: str
    step: int
    model: dict  # the LightningModule's state (the recurrence, readout and any learned h0)
    optimizer: dict
    rng: torch.Tensor  # torch's CPU generator (nothing in a step draws from it today: kept so that nothing can)
    curve: list  # CurveRecorder's points so far
    best: dict | None  # BestWeights': {"value", "step", "state"}, None before its first validation
    resumed_at: list  # the steps at which this run went on from a checkpoint before
    wall_s: float  # the training's wall time up to here, over every invocation (work lost to a kill not counted)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, **self.__dict__}, buffer)
        return buffer.getvalue()


def read(path: str | Path, run_id: str) -> Progress | None:
    """The run's checkpoint at `path`, or None where there is none. One that cannot be
    read, or is another run's or another format's, is removed with a warning: the run starts
    over, which costs time and nothing else."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if saved.pop("format") != FORMAT or saved["run_id"] != run_id:
            raise ValueError(f"format {saved.get('format')} of run {saved.get('run_id')}")
        return Progress(**saved)
    except Exception as err:  # noqa: BLE001 - any unreadable file: start over
        log.warning("checkpoint %s not used (%s: %s); the run starts over", path, type(err).__name__, err)
        path.unlink(missing_ok=True)
        return None


def resumable(loader: DataLoader) -> bool:
    """Whether batch i of the loader is item i of its dataset (map-style, in order, already
    batched): then the stream can start at any step."""
    return loader.batch_size is None and isinstance(loader.sampler, SequentialSampler) and loader.num_workers == 0


def starting_at(loader: DataLoader, step: int) -> DataLoader:
    """The loader's batches from batch `step` on (a `resumable` loader)."""
    return DataLoader(Subset(loader.dataset, range(step, len(loader.dataset))), batch_size=None)


class Checkpoints(pl.Callback):
    """Writes the run's Progress at a validation point while fitting, at most every
    `every_s` seconds and never at the last step (the run is about to end). Put it after
    the callbacks whose state it saves: Lightning calls callbacks in their order."""

    def __init__(self, path: str | Path, run_id: str, curve, best, start: int = 0, resumed_at: list | None = None,
                 wall_s: float = 0.0, every_s: float | None = None):
        self.path, self.run_id, self.curve, self.best = Path(path), run_id, curve, best
        self.start, self.resumed_at = start, list(resumed_at or [])
        self.every_s = EVERY_S if every_s is None else every_s
        self.last = self.started = time.monotonic()
        self.wall_s = wall_s  # at `started`
        self.failed = False

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or self.failed:
            return
        if trainer.global_step >= trainer.max_steps or time.monotonic() - self.last < self.every_s:
            return
        best = None
        if self.best is not None and self.best.state is not None:
            best = {"value": self.best.best, "step": self.best.step, "state": self.best.state}
        progress = Progress(self.run_id, self.start + trainer.global_step, pl_module.state_dict(),
                            trainer.optimizers[0].state_dict(), torch.get_rng_state(), list(self.curve.points), best,
                            self.resumed_at, self.wall_s + time.monotonic() - self.started)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, progress.to_bytes())
        except OSError as err:  # the run goes on without: a checkpoint saves time, never results
            log.warning("checkpoint %s not written (%s); the run goes on without checkpoints", self.path, err)
            self.failed = True
        self.last = time.monotonic()


class Restore(pl.Callback):
    """Puts a checkpoint's optimizer state and generator back once Lightning has made the
    optimizer (the weights are loaded before the fit)."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def on_train_start(self, trainer, pl_module):
        trainer.optimizers[0].load_state_dict(self.progress.optimizer)
        torch.set_rng_state(self.progress.rng)
