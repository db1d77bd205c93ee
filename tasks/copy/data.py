"""The copying task's data module (torch and Lightning): batches drawn by `make_batch`.

Imported by `CopyTask.datamodule` when a run needs data, never by the task module's import.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from tasks.copy.sequences import make_batch


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
    """Train: ``train_steps`` batches of ``batch_size``; val and test: ``eval_batches``
    batches of ``eval_batch_size``, each from its own seed stream."""

    def __init__(self, batch_size: int, seed: int, train_steps: int, delay: int, min_delay: int,
                 eval_batches: int, eval_batch_size: int):
        super().__init__()
        delays = {"delay": delay, "min_delay": min_delay}
        # disjoint seed streams for train / val / test
        self.train = GeneratedBatches(train_steps, 3 * seed, batch_size=batch_size, **delays)
        self.val = GeneratedBatches(eval_batches, 3 * seed + 1, batch_size=eval_batch_size, **delays)
        self.test = GeneratedBatches(eval_batches, 3 * seed + 2, batch_size=eval_batch_size, **delays)

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=None)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=None)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=None)
