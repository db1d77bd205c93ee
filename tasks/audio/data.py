"""The audio task's data module (torch and Lightning): its one sequence, as often as asked.

Imported by `AudioGeneration.datamodule` when a run needs data, never by the task module's
import.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset


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
