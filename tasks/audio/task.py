"""The audio generation task's adapter: NMSE, the waveform plot, parameters, loss, metrics.

`nmse` and `plot_waveforms` are usable outside the task (the leaderboard reuses them).
Numpy only at import; `datamodule` imports the data module, the methods import torch.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.audio.targets import DEFAULT_OFFSET_S, LENGTH, MIN_SAMPLE_RATE, SAMPLE_RATE, SYNTH_PREFIX, load_target
from tasks.base import Task
from tasks.errors import UserInputError

if TYPE_CHECKING:
    import torch

    from tasks.audio.data import AudioDataModule


def nmse(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MSE / variance of the target, per sequence, averaged over the batch.

    Population variance over all steps and outputs of each sequence, so predicting
    zeros scores mean(y^2)/var(y), predicting the mean scores 1, the target 0.
    """
    dims = tuple(range(1, y.dim()))
    mse = ((y_hat - y) ** 2).mean(dim=dims)
    return (mse / y.var(dim=dims, unbiased=False)).mean()


def plot_waveforms(
    ax, target, generated=None, label: str = "generated", sample_rate: int = SAMPLE_RATE
):
    """Target (thick grey) and generated waveform (thin) on one matplotlib axes, over
    time in milliseconds: the paper's figure for one architecture."""
    target = np.asarray(target, dtype=np.float64).reshape(-1)
    ms = np.arange(len(target)) * 1000.0 / sample_rate
    ax.plot(ms, target, color="0.6", linewidth=2.5, label="target")
    if generated is not None:
        generated = np.asarray(generated, dtype=np.float64).reshape(-1)
        ax.plot(ms[: len(generated)], generated, linewidth=1.2, label=label)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("amplitude")
    ax.set_ylim(-1.3, 1.3)
    ax.legend(loc="upper right", fontsize="small")
    return ax


# --------------------------------------------------------------------------------------
# The task adapter.


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class AudioGeneration(Task):
    """Generate one target waveform from no input (see the package docstring, `tasks.audio`).

    target: "synth:<name>" (see DEFAULT_TARGETS) or a path to an audio file.
    offset: window start in samples at ``sample_rate``; None = 0.1 s.
    length: window length in samples (the paper: 320).
    sample_rate: rate the target is resampled to (the paper: 44100 Hz).
    """

    name = "audio"
    primary_metric = "nmse"
    higher_is_better = False
    input_size = 1  # always zero; nn.RNN/LSTM/GRU refuse input_size=0
    output_size = 1
    #: the input is all zeros, so input weights are inert: a counter of *effective*
    #: parameters may leave them out to match the paper's no-input network
    zero_input = True
    learn_margin = 0.01  # NMSE of 0.99 or more: the network outputs little more than the mean

    def __init__(
        self,
        target: str = "synth:pluck",
        offset: int | None = None,
        length: int = LENGTH,
        sample_rate: int = SAMPLE_RATE,
    ):
        # integers only (numpy ints from a YAML/pandas config are fine): they enter
        # the run id, and a window must start and end on a sample
        if sample_rate is None or not _is_int(sample_rate) or sample_rate < MIN_SAMPLE_RATE:
            raise UserInputError(
                f"audio sample_rate must be an integer >= {MIN_SAMPLE_RATE} Hz, "
                f"got {sample_rate!r}: pass --param sample_rate=N"
            )
        if not _is_int(length) or length < 2:
            raise UserInputError(
                f"audio length must be an integer >= 2, got {length!r}: pass --param length=N"
            )
        if offset is None:
            offset = round(DEFAULT_OFFSET_S * sample_rate)
        if not _is_int(offset) or offset < 0:
            raise UserInputError(
                f"audio offset must be a whole number of samples >= 0, got {offset!r}: pass --param offset=N"
            )
        offset, length, sample_rate = int(offset), int(length), int(sample_rate)
        target = os.fspath(target)
        if not target.startswith(SYNTH_PREFIX):
            target = os.path.expanduser(target)
        self.offset, self.length, self.sample_rate = offset, length, sample_rate
        self.target_signal, self.provenance = load_target(target, offset, length, sample_rate)
        # a file is named by its file name and identified by its content (sha256), so
        # moving it keeps the run id and editing it changes the id; a built-in by its name
        self.target = self.provenance["path"] if self.provenance["source"] == "file" else target

    def params(self) -> dict[str, Any]:
        shown = Path(self.target).name if self.provenance["source"] == "file" else self.target
        return {
            "target": shown,
            "sha256": self.provenance["sha256"],
            "offset": self.offset,
            "length": self.length,
            "sample_rate": self.sample_rate,
        }

    def sources(self) -> dict[str, Any]:
        return dict(self.provenance)

    def batch(self) -> dict[str, torch.Tensor]:
        """The single training sequence: x zeros (1, L, 1), y the target (1, L, 1)."""
        import torch

        y = torch.tensor(self.target_signal, dtype=torch.float32).view(1, self.length, 1)
        return {"x": torch.zeros(1, self.length, self.input_size), "y": y}

    def horizon(self) -> int:
        """The window's length: the one sequence is that long."""
        return self.length

    def datamodule(self, batch_size: int, seed: int, train_steps: int) -> AudioDataModule:
        # batch_size is ignored: a run fits one target, so every batch is that one
        # sequence. seed is unused: the data are fixed; the model's init takes the seed.
        from tasks.audio.data import AudioDataModule

        return AudioDataModule(self.batch(), train_steps)

    def loss(self, y_hat: torch.Tensor, batch: dict, reduction: str = "mean") -> torch.Tensor:
        from torch.nn import functional as F

        if reduction == "sum":  # per sequence: the squared errors of all steps added
            return F.mse_loss(y_hat, batch["y"], reduction="sum") / len(y_hat)
        return F.mse_loss(y_hat, batch["y"])

    def metrics(self, y_hat: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        from torch.nn import functional as F

        return {"mse": F.mse_loss(y_hat, batch["y"]), "nmse": nmse(y_hat, batch["y"])}

    def baselines(self) -> dict[str, float]:
        """NMSE of outputs that need no network: the best constant (the target's mean)
        scores 1 by definition (`nmse`, the trivial baseline); all zeros scores
        mean(y^2)/var(y)."""
        y = self.target_signal
        return {"nmse": 1.0, "nmse_zero_output": float(np.mean(y**2) / np.var(y))}

    def artifacts(self, y_hat: torch.Tensor, batch: dict) -> dict[str, list[float]]:
        """Generated and target waveforms of every sequence in the batch, flattened,
        rounded to 5 decimals, for the run record and the leaderboard's plot."""

        def as_list(t: torch.Tensor) -> list[float]:
            return np.round(t.detach().double().cpu().numpy().reshape(-1), 5).tolist()

        return {"generated": as_list(y_hat), "target": as_list(batch["y"])}

    def log_media(self, logger, y_hat: torch.Tensor, batch: dict, tag: str) -> None:
        """With a WandbLogger: the generated and target waveforms as wandb.Audio and a
        target-vs-generated plot. Any other logger: nothing."""
        from pytorch_lightning.loggers import WandbLogger

        if not isinstance(logger, WandbLogger):
            return
        import wandb
        from matplotlib.figure import Figure  # not pyplot: no global backend or state

        generated = y_hat[0, :, 0].detach().double().cpu().numpy()
        target = batch["y"][0, :, 0].detach().double().cpu().numpy()
        fig = Figure(figsize=(8, 3))
        ax = fig.subplots()
        plot_waveforms(ax, target, generated, sample_rate=self.sample_rate)
        shown = Path(self.target).name if self.provenance["source"] == "file" else self.target
        score = nmse(y_hat[:1], batch["y"][:1]).item()
        ax.set_title(f"{shown}, offset {self.offset}, NMSE {score:.4g}")
        fig.tight_layout()
        logger.experiment.log(
            {
                # audio players expect [-1, 1]; an untrained network may overshoot
                f"{tag}/generated_audio": wandb.Audio(
                    np.clip(generated, -1, 1), sample_rate=self.sample_rate
                ),
                f"{tag}/target_audio": wandb.Audio(target, sample_rate=self.sample_rate),
                f"{tag}/waveform": wandb.Image(fig),
            }
        )
