"""The copying task's data generator, baseline and loss."""

import math

import torch

from tasks.copy import BLANK, DELIMITER, IGNORE, CopyTask, make_batch


def test_layout_matches_arjovsky():
    batch = make_batch(torch.Generator().manual_seed(0), 4, delay=7, min_delay=7)
    tokens, targets = batch["x"].argmax(-1), batch["y"]
    assert tokens.shape == (4, 27) and targets.shape == (4, 27)  # D + 20
    for seq, target in zip(tokens, targets):
        assert seq[:10].min() >= 1 and seq[:10].max() <= 8
        assert torch.all(seq[10:16] == BLANK) and seq[16] == DELIMITER and torch.all(seq[17:] == BLANK)
        assert torch.all(target[:17] == IGNORE)
        assert torch.equal(target[17:], seq[:10])  # each symbol recalled D + 10 steps after it was shown


def test_variable_delay_moves_the_recall_window():
    batch = make_batch(torch.Generator().manual_seed(3), 64, delay=30, min_delay=5)
    delays = batch["delay"]
    assert delays.min() >= 5 and delays.max() <= 30 and delays.unique().numel() > 5
    for seq, target, d in zip(batch["x"].argmax(-1), batch["y"], delays):
        assert seq[d + 9] == DELIMITER
        assert torch.equal(target[d + 10:d + 20], seq[:10])
        assert (target != IGNORE).sum() == 10


def test_generation_is_deterministic_per_seed():
    task = CopyTask(delay=5)
    a = task.datamodule(8, seed=1, train_steps=3).train[2]
    b = task.datamodule(8, seed=1, train_steps=3).train[2]
    c = task.datamodule(8, seed=2, train_steps=3).train[2]
    assert torch.equal(a["x"], b["x"]) and not torch.equal(a["x"], c["x"])
    data = task.datamodule(8, seed=1, train_steps=3)
    assert not torch.equal(data.val[0]["x"][:8], data.test[0]["x"][:8])


def test_memoryless_baseline():
    task = CopyTask(delay=100)
    assert math.isclose(task.baselines()["ce_per_step_whole_sequence"], 10 * math.log(8) / 120)
    batch = make_batch(torch.Generator().manual_seed(0), 16, 100, 100)
    uniform = torch.zeros(16, 120, 9)
    uniform[..., 0] = -1e9  # never blank at a recall step, uniform over the 8 symbols
    metrics = task.metrics(uniform, batch)
    assert math.isclose(metrics["ce"].item(), math.log(8), rel_tol=1e-6)


def test_perfect_recall_scores_one():
    task = CopyTask(delay=4)
    batch = make_batch(torch.Generator().manual_seed(0), 5, 4, 4)
    y_hat = torch.nn.functional.one_hot(batch["y"].clamp(min=0), 9).float() * 50
    metrics = task.metrics(y_hat, batch)
    assert metrics["recall_accuracy"] == 1 and metrics["ce"] < 1e-6
