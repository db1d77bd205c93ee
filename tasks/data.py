"""The data modules and datasets of the tasks (torch and Lightning).

Kept apart from the task modules, which must import without torch: a task's
`datamodule()` imports this module when a run needs its data.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from tasks.copy import make_batch
from tasks.timit import epoch_batches

if TYPE_CHECKING:
    from tasks.copy import CopyTask

# --------------------------------------------------------------------------------------
# copy (tasks/copy.py)


class GeneratedBatches(Dataset):
    """`count` batches; batch i is generated from (seed, i) alone, so any one can be rebuilt."""

    def __init__(self, count: int, seed: int, **batch_args):
        self.count, self.seed, self.batch_args = count, seed, batch_args

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return make_batch(generator, **self.batch_args)


class CopyData(pl.LightningDataModule):
    def __init__(self, task: CopyTask, batch_size: int, seed: int, train_steps: int):
        super().__init__()
        delays = {"delay": task.delay, "min_delay": task.min_delay}
        # disjoint seed streams for train / val / test
        self.train = GeneratedBatches(train_steps, 3 * seed, batch_size=batch_size, **delays)
        self.val = GeneratedBatches(task.eval_batches, 3 * seed + 1, batch_size=task.eval_batch_size, **delays)
        self.test = GeneratedBatches(task.eval_batches, 3 * seed + 2, batch_size=task.eval_batch_size, **delays)

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=None)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=None)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=None)


# --------------------------------------------------------------------------------------
# audio (tasks/audio.py)


class _Repeat(Dataset):
    """The one-sequence batch, ``n`` times (already batched: use batch_size=None)."""

    def __init__(self, batch: dict[str, torch.Tensor], n: int):
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        # fresh copies (640 floats): nothing a step does can alter the next step's data
        return {k: v.clone() for k, v in self.batch.items()}


class AudioDataModule(pl.LightningDataModule):
    """Train: the target batch ``train_steps`` times (one step = one epoch of the
    paper, whose data set is this one sequence). Val and test: it once."""

    def __init__(self, batch: dict[str, torch.Tensor], train_steps: int):
        super().__init__()
        self.batch, self.train_steps = batch, train_steps

    def _loader(self, n: int) -> DataLoader:
        return DataLoader(_Repeat(self.batch, n), batch_size=None, shuffle=False, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_steps)

    def val_dataloader(self) -> DataLoader:
        return self._loader(1)

    def test_dataloader(self) -> DataLoader:
        return self._loader(1)


# --------------------------------------------------------------------------------------
# timit and synthwords (tasks/timit.py)


def pad_batch(sequences: list[torch.Tensor], labels: list[int], indices: list[int]) -> dict:
    """x (B, T, F) zero-padded after each sequence's end, lengths (B,), y (B,), index (B,)."""
    lengths = torch.tensor([len(s) for s in sequences])
    x = torch.zeros(len(sequences), int(lengths.max()), sequences[0].shape[1])
    for row, seq in enumerate(sequences):
        x[row, : len(seq)] = seq
    return {"x": x, "lengths": lengths, "y": torch.tensor(labels), "index": torch.tensor(indices)}


class WordSequences(Dataset):
    """A split as items (features (T, F), label, index within the split)."""

    def __init__(self, sequences: list[torch.Tensor], labels: list[int]):
        self.sequences, self.labels = sequences, labels

    def __len__(self):
        return len(self.sequences)

    def __getitem__(self, i):
        return self.sequences[i], self.labels[i], i


def collate(items) -> dict:
    sequences, labels, indices = zip(*items, strict=True)
    return pad_batch(list(sequences), list(labels), list(indices))


@functools.lru_cache(maxsize=16)
def _epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    # even seeds for the shuffling, odd ones for the noise: the two streams never coincide
    generator = torch.Generator().manual_seed(2 * (seed * 1_000_003 + epoch))
    return tuple(torch.randperm(n, generator=generator).tolist())


class TrainBatches(Dataset):
    """``count`` training batches cycling through the training set, reshuffled each epoch.

    Sequence j of the stream (batch j // batch_size) is item j % n of epoch j // n's
    permutation; batch i's noise comes from (seed, i) alone, so any batch can be rebuilt
    on its own, whatever was drawn before it."""

    def __init__(self, data: WordSequences, count: int, batch_size: int, seed: int,
                 noise_std: float):
        self.data, self.count, self.batch_size = data, count, batch_size
        self.seed, self.noise_std = seed, noise_std

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        if not 0 <= i < self.count:
            raise IndexError(i)
        n = len(self.data)
        stream = range(i * self.batch_size, (i + 1) * self.batch_size)
        batch = collate([self.data[_epoch_order(n, self.seed, j // n)[j % n]] for j in stream])
        if self.noise_std > 0:
            generator = torch.Generator().manual_seed(2 * (self.seed * 1_000_003 + i) + 1)
            noise = torch.randn(batch["x"].shape, generator=generator) * self.noise_std
            real = torch.arange(batch["x"].shape[1]) < batch["lengths"][:, None]  # (B, T)
            batch["x"] += noise * real[..., None]  # padding stays exactly zero
        return batch


class WordsData(pl.LightningDataModule):
    """By steps: one stream of ``train_steps`` batches. By epoch: the trainer reloads the
    training loader every epoch and gets that epoch's batches of the same stream."""

    def __init__(self, train: WordSequences, test: WordSequences, batch_size: int, seed: int,
                 train_steps: int, noise_std: float, by_epoch: bool = False):
        super().__init__()
        self.train_set, self.seed, self.noise_std = train, seed, noise_std
        self.by_epoch = by_epoch
        self.train = TrainBatches(train, train_steps, batch_size, seed, noise_std)
        self.test, self.batch_size = test, batch_size

    def train_dataloader(self):
        if self.by_epoch:
            per_epoch = epoch_batches(len(self.train_set), self.batch_size)
            first = self.trainer.current_epoch * per_epoch
            batches = TrainBatches(self.train_set, first + per_epoch, self.batch_size, self.seed, self.noise_std)
            return DataLoader(Subset(batches, range(first, first + per_epoch)), batch_size=None)
        return DataLoader(self.train, batch_size=None)

    def val_dataloader(self):
        return DataLoader(self.test, batch_size=self.batch_size, shuffle=False, collate_fn=collate)

    def test_dataloader(self):
        return self.val_dataloader()
