"""What a copying sequence is: its alphabet, its layout and `make_batch`, which draws a batch.

Below both the task (`tasks.copy.task`: loss and metrics read the layout) and its data module
(`tasks.copy.data`: draws batches), so neither imports the other's module for it. Imports no
torch until a batch is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

N_SYMBOLS = 8
N_RECALL = 10
BLANK, DELIMITER = 0, N_SYMBOLS + 1
IGNORE = -100


def make_batch(generator: torch.Generator, batch_size: int, delay: int, min_delay: int) -> dict:
    """One batch: x (B, delay+20, 10) one-hot, y (B, delay+20) with IGNORE off the recall steps."""
    import torch

    length = delay + 2 * N_RECALL
    symbols = torch.randint(1, N_SYMBOLS + 1, (batch_size, N_RECALL), generator=generator)
    delays = torch.randint(min_delay, delay + 1, (batch_size,), generator=generator)
    tokens = torch.full((batch_size, length), BLANK)
    tokens[:, :N_RECALL] = symbols
    rows = torch.arange(batch_size)
    tokens[rows, delays + N_RECALL - 1] = DELIMITER
    targets = torch.full((batch_size, length), IGNORE)
    recall_steps = (delays + N_RECALL).unsqueeze(1) + torch.arange(N_RECALL)
    targets.scatter_(1, recall_steps, symbols)
    x = torch.nn.functional.one_hot(tokens, N_SYMBOLS + 2).float()
    return {"x": x, "y": targets, "delay": delays}
