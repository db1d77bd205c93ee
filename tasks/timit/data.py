"""The word tasks' data (torch and Lightning): padded batches, the epoch-shuffled training
stream with its input noise, and the data module; shared by timit and synthwords.

Imported by the task (`tasks.timit.task`) when it prepares its data, never by its import.
"""

from __future__ import annotations

import functools

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset


def epoch_batches(n: int, batch_size: int) -> int:
    """Batches in one pass over ``n`` sequences (the last one may be short)."""
    return -(-n // batch_size)


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

    def __init__(self, train: WordSequences, val: WordSequences, test: WordSequences, batch_size: int, seed: int,
                 train_steps: int, noise_std: float, by_epoch: bool = False):
        super().__init__()
        self.train_set, self.seed, self.noise_std = train, seed, noise_std
        self.by_epoch = by_epoch
        self.train = TrainBatches(train, train_steps, batch_size, seed, noise_std)
        self.val, self.test, self.batch_size = val, test, batch_size

    def train_dataloader(self):
        if self.by_epoch:
            per_epoch = epoch_batches(len(self.train_set), self.batch_size)
            first = self.trainer.current_epoch * per_epoch
            batches = TrainBatches(self.train_set, first + per_epoch, self.batch_size, self.seed, self.noise_std)
            return DataLoader(Subset(batches, range(first, first + per_epoch)), batch_size=None)
        return DataLoader(self.train, batch_size=None)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=self.batch_size, shuffle=False, collate_fn=collate)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=self.batch_size, shuffle=False, collate_fn=collate)
