"""The copying task's adapter: parameters, loss and metrics on the recall steps, baselines.

Torch-free at import (the CLI checks parameters with it); `datamodule` imports the data
module, `loss` and `metrics` import torch.
"""

from __future__ import annotations

import math

from tasks.base import Task
from tasks.copy.sequences import IGNORE, N_RECALL, N_SYMBOLS
from tasks.errors import UserInputError


class CopyTask(Task):
    name = "copy"
    primary_metric = "recall_accuracy"
    higher_is_better = True
    input_size = N_SYMBOLS + 2
    output_size = N_SYMBOLS + 1
    learn_margin = 0.02  # recall accuracy at most 1/8 + 0.02: not learned

    def __init__(self, delay: int = 100, variable_delay: bool = False, min_delay: int = 1,
                 eval_batches: int = 4, eval_batch_size: int = 256):
        for name, value, hint in (("delay", delay, "--param delay=N"), ("min_delay", min_delay, "--param min_delay=N"),
                                  ("eval_batches", eval_batches, "--param eval_batches=N"),
                                  ("eval_batch_size", eval_batch_size, "--param eval_batch_size=N")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserInputError(f"copy task: bad {name} {value!r}: it must be an integer >= 1 ({hint})")
        if not isinstance(variable_delay, bool):
            raise UserInputError(f"copy task: bad variable_delay {variable_delay!r}: it must be true or false "
                                 "(--param variable_delay=true)")
        if variable_delay and min_delay > delay:
            raise UserInputError(f"copy task: min_delay {min_delay} > delay {delay}: lower it "
                                 f"(--param min_delay=N with N <= {delay})")
        self.delay = delay
        self.variable_delay = bool(variable_delay)
        self.min_delay = min_delay if variable_delay else delay
        self.eval_batches, self.eval_batch_size = eval_batches, eval_batch_size

    def params(self):
        return {"delay": self.delay, "variable_delay": self.variable_delay, "min_delay": self.min_delay,
                "eval_sequences": self.eval_batches * self.eval_batch_size}

    def datamodule(self, batch_size, seed, train_steps):
        from tasks.copy.data import CopyData

        return CopyData(batch_size, seed, train_steps, self.delay, self.min_delay, self.eval_batches,
                        self.eval_batch_size)

    def horizon(self):
        """delay + 20, the length of every sequence (padded to the longest delay when it varies)."""
        return self.delay + 2 * N_RECALL

    @staticmethod
    def setting_label(params, keys, x=None):
        """Always the delay kind: "fixed delay 10", "variable delay 5–10" (uniform over
        [min_delay, delay]); with the delay on the x axis, D stands for it."""
        delay = "D" if x == "delay" else params["delay"]
        kind = (f"variable delay {params['min_delay']}–{delay}" if params.get("variable_delay")
                else f"fixed delay {delay}")
        rest = [k for k in keys if k not in ("delay", "variable_delay", "min_delay")]
        return ", ".join([kind, *([Task.setting_label(params, rest)] if rest else [])])

    def loss(self, y_hat, batch, reduction="mean"):
        import torch

        if reduction == "sum":  # per sequence: the 10 recall steps added
            summed = torch.nn.functional.cross_entropy(y_hat.transpose(1, 2), batch["y"], ignore_index=IGNORE,
                                                       reduction="sum")
            return summed / len(y_hat)
        return torch.nn.functional.cross_entropy(y_hat.transpose(1, 2), batch["y"], ignore_index=IGNORE)

    def metrics(self, y_hat, batch):
        scored = batch["y"] != IGNORE
        correct = (y_hat.argmax(-1) == batch["y"])[scored].float()
        return {"ce": self.loss(y_hat, batch), "recall_accuracy": correct.mean()}

    def baselines(self):
        # a model without memory: uniform over the 8 symbols at each recall step
        delays = range(self.min_delay, self.delay + 1)
        whole = sum(N_RECALL * math.log(N_SYMBOLS) / (d + 2 * N_RECALL) for d in delays) / len(delays)
        return {"ce": math.log(N_SYMBOLS), "ce_per_step_whole_sequence": whole,
                "recall_accuracy": 1 / N_SYMBOLS}
