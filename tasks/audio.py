"""Audio signal generation: the Clockwork RNN paper's task 1.

A network with no input emits a target waveform, one sample per step, read out at
every step (Koutník et al. 2014, section 4.1): 320 samples of music at 44.1 kHz
(about 7 ms), scaled to [-1, 1]. Loss MSE over all steps; the leaderboard ranks by
NMSE = MSE / variance of the target, so predicting the target's mean scores 1.

Input. The paper's network has no input, but torch's nn.RNN / nn.LSTM / nn.GRU reject
``input_size=0`` ("input_size must be greater than zero", torch 2.13), so the task
feeds one input feature that is always zero. Its input weights then get zero gradient
and never change the output: the network is exactly a no-input network, with
``hidden * gates`` inert parameters (``AudioGeneration.zero_input`` says so, for the
parameter counting).

Targets (the ``target`` parameter):
- ``"synth:<name>"``: one of ``DEFAULT_TARGETS``, five instrument-like notes the project
  synthesises itself with numpy from fixed seeds, offline and deterministically,
  stored as 16-bit PCM exactly as ``write_default_targets`` writes them to WAV.
- any other string is a path to an audio file libsndfile reads (WAV, FLAC, OGG, ...),
  any sample rate (resampled with scipy.signal.resample_poly), any channel count
  (mixed to mono by averaging), integer or float samples.

The window: ``offset`` and ``length`` count samples *at the task's sample rate*, i.e.
after resampling. ``offset=None`` means 0.1 s into the signal (skipping the attack),
resolved to an integer in ``params()``. The window is then divided by its peak |x| so
that max |target| == 1; nothing else is done to it (no DC removal, no fades).
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.base import Task
from tasks.errors import UserInputError

if TYPE_CHECKING:
    import torch

    from tasks.data import AudioDataModule

SAMPLE_RATE = 44_100  # the paper's
LENGTH = 320  # the paper's: 320 samples, about 7 ms at 44.1 kHz
DEFAULT_OFFSET_S = 0.1  # default window start: past every default target's attack
MIN_SAMPLE_RATE = 8_000  # the built-in notes need their partials below Nyquist
SILENCE_PEAK = 1e-4  # peak |x| below this (-80 dBFS, ~3 LSB of 16-bit) is "silent"
SYNTH_PREFIX = "synth:"
SYNTH_SEED = 1402_3511  # the paper's arXiv number; each target adds its own index
SYNTH_DURATION_S = 0.5


# --------------------------------------------------------------------------------------
# Default targets: five instrument-like notes synthesised with numpy.
# Each function maps (sample_rate, rng) to a float signal; `synthesise` normalises and
# quantises it to 16-bit PCM, so the target is bit-for-bit the WAV file's content.


def _time(sample_rate: int) -> np.ndarray:
    return np.arange(round(SYNTH_DURATION_S * sample_rate)) / sample_rate


def _attack(t: np.ndarray, seconds: float) -> np.ndarray:
    """A smooth exponential onset, so no target starts with a click."""
    return 1.0 - np.exp(-t / seconds)


def synth_pluck(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Plucked string, Karplus-Strong: a noise burst in a 220 Hz delay line whose
    feedback averages adjacent samples, so high partials die first."""
    n = len(_time(sample_rate))
    period = round(sample_rate / 220.0)
    y = np.zeros(n)
    y[:period] = rng.uniform(-1.0, 1.0, period)
    decay = 0.996
    # y[i] only reads samples at least one period back, but the loop stays scalar for
    # clarity: 22k iterations take a few milliseconds.
    for i in range(period, n):
        y[i] = decay * 0.5 * (y[i - period] + y[i - period - 1])
    return y


def synth_bowed(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Bowed string: a band-limited sawtooth at 196 Hz (G3) with 5.5 Hz vibrato, a
    gentle harmonic roll-off and a slow bow attack."""
    t = _time(sample_rate)
    f0 = 196.0
    freq = f0 * (1.0 + 0.006 * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    y = np.zeros_like(t)
    for k in range(1, int(0.45 * sample_rate / (f0 * 1.01)) + 1):  # stay below Nyquist
        y += np.sin(k * phase) / k**1.2
    return y * _attack(t, 0.03)


def synth_chord(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Piano-like C major chord (C4 E4 G4): eight slightly inharmonic partials per
    note (stiff string, B = 1e-4) decaying faster the higher they are, and a short
    hammer-noise thump."""
    t = _time(sample_rate)
    y = np.zeros_like(t)
    for f0 in (261.63, 329.63, 392.00):
        for k in range(1, 9):
            fk = k * f0 * math.sqrt(1.0 + 1e-4 * k * k)
            if fk >= 0.45 * sample_rate:
                break
            y += (
                np.exp(-t * (1.5 + 0.8 * k))
                / k
                * np.sin(2 * np.pi * fk * t + rng.uniform(0, 2 * np.pi))
            )
    thump = rng.standard_normal(len(t)) * np.exp(-t / 0.004)
    return y * _attack(t, 0.002) + 0.3 * thump


def synth_bell(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Bell with inharmonic partials (Risset's frequency ratios) on 330 Hz; higher
    partials are weaker and die sooner."""
    t = _time(sample_rate)
    ratios = (0.56, 0.92, 1.19, 1.70, 2.00, 2.74, 3.00, 3.76, 4.07)
    y = np.zeros_like(t)
    for i, ratio in enumerate(ratios):
        amplitude = 1.0 / (1.0 + 0.4 * i)
        decay_s = 0.8 / (1.0 + 0.5 * i)
        y += (
            amplitude
            * np.exp(-t / decay_s)
            * np.sin(2 * np.pi * 330.0 * ratio * t + rng.uniform(0, 2 * np.pi))
        )
    return y * _attack(t, 0.001)


def synth_flute(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Flute-like C5 (523.25 Hz): a nearly pure tone with weak 2nd and 3rd harmonics,
    light vibrato and breath noise (white noise through a one-pole 3 kHz low-pass)."""
    from scipy.signal import lfilter

    t = _time(sample_rate)
    f0 = 523.25
    freq = f0 * (1.0 + 0.004 * np.sin(2 * np.pi * 5.0 * t))
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    tone = np.sin(phase) + 0.25 * np.sin(2 * phase + 0.3) + 0.08 * np.sin(3 * phase + 1.1)
    pole = math.exp(-2 * np.pi * 3000.0 / sample_rate)
    breath = lfilter([1.0 - pole], [1.0, -pole], rng.standard_normal(len(t)))
    return (tone + 0.15 * breath / np.abs(breath).max()) * _attack(t, 0.05)


@dataclass(frozen=True)
class SynthTarget:
    make: Callable[[int, np.random.Generator], np.ndarray]
    seed: int

    @property
    def description(self) -> str:
        return " ".join(self.make.__doc__.split())


DEFAULT_TARGETS: dict[str, SynthTarget] = {
    f"{SYNTH_PREFIX}{make.__name__.removeprefix('synth_')}": SynthTarget(make, SYNTH_SEED + i)
    for i, make in enumerate((synth_pluck, synth_bowed, synth_chord, synth_bell, synth_flute))
}


def synthesise(name: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The whole default target ``name`` as 16-bit PCM samples (int16, mono).

    Normalised to a 0.9 peak before quantising; the int16 samples are what
    ``write_default_targets`` writes and what the task cuts its window from.
    """
    if name not in DEFAULT_TARGETS:
        raise UserInputError(
            f"unknown built-in audio target {name!r}: use one of {', '.join(DEFAULT_TARGETS)} "
            "or a path to a WAV/FLAC/OGG file"
        )
    spec = DEFAULT_TARGETS[name]
    y = spec.make(sample_rate, np.random.default_rng(spec.seed))
    return np.round(0.9 * 32767 * y / np.abs(y).max()).astype(np.int16)


def write_default_targets(
    directory: str | os.PathLike, sample_rate: int = SAMPLE_RATE
) -> dict[str, Path]:
    """Write every default target as a 16-bit WAV file (e.g. ``synth_pluck.wav``) to
    listen to; returns {name: path}. Loading such a file as a target with the same
    offset and length gives exactly the built-in target."""
    import soundfile as sf

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in DEFAULT_TARGETS:
        path = directory / f"{name.replace(':', '_')}.wav"
        sf.write(path, synthesise(name, sample_rate), sample_rate, subtype="PCM_16")
        paths[name] = path
    return paths


# --------------------------------------------------------------------------------------
# Loading a target: file or built-in -> the scaled window plus where it came from.


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def read_audio(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, frames_needed: int | None = None
):
    """Read an audio file as mono float64 at ``sample_rate``.

    Returns (signal, provenance, total): ``total`` is the length the whole file has
    at ``sample_rate``. With ``frames_needed`` only the start of the file that those
    output samples depend on is read and resampled, so a long song is not decoded in
    full; its first ``frames_needed`` samples are bit-identical to resampling the
    whole file (resample_poly computes each output from a finite filter span).
    Raises UserInputError for a missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        problem = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise UserInputError(
            f"audio target '{path}' {problem}: pass an existing WAV/FLAC/OGG file "
            f"or one of {', '.join(DEFAULT_TARGETS)} with --target"
        )
    import soundfile as sf  # after the checks above: a mistyped path is said at once
    from scipy.signal import resample_poly

    try:
        info = sf.info(path)
    except sf.SoundFileError as err:  # libsndfile says why; keep it on one line
        raise UserInputError(
            f"audio target '{path}' is not readable audio ({_one_line(err)}): "
            "pass a WAV/FLAC/OGG file with --target"
        ) from None

    ratio = math.gcd(sample_rate, info.samplerate)
    up, down = sample_rate // ratio, info.samplerate // ratio
    stop = None
    if frames_needed is not None:
        # resample_poly's filter spans 10 * max(up, down) upsampled samples on each
        # side of an output sample: read that much input beyond the last one we need.
        stop = math.ceil(frames_needed * down / up) + math.ceil(10 * max(up, down) / up) + 2
    try:
        data, _ = sf.read(path, dtype="float64", always_2d=True, stop=stop)
    except sf.SoundFileError as err:
        raise UserInputError(
            f"audio target '{path}' could not be decoded ({_one_line(err)}): "
            "pass an intact WAV/FLAC/OGG file with --target"
        ) from None
    signal = data.mean(axis=1)  # mono: the average of the channels
    if up != down:
        signal = resample_poly(signal, up, down)
        # the length resampling the whole file would give, so "too short" is judged
        # on the file, not on the prefix we read
        signal = signal[: math.ceil(info.frames * up / down)]
    provenance = {
        "source": "file",
        "path": str(path.resolve()),
        "sha256": _sha256_file(path),
        "format": info.format,
        "subtype": info.subtype,
        "file_sample_rate": info.samplerate,
        "channels": info.channels,
        "frames": info.frames,
    }
    return signal, provenance, math.ceil(info.frames * up / down)


def cut_and_scale(
    signal: np.ndarray, offset: int, length: int, name: str, total: int | None = None
) -> np.ndarray:
    """The window signal[offset : offset + length] divided by its peak |x| (float64).

    ``total`` is the signal's full length when ``signal`` is only its start.
    Raises UserInputError when the signal is too short or the window silent.
    """
    total = len(signal) if total is None else total
    if total < offset + length:
        raise UserInputError(
            f"audio target '{name}' is too short: {total} samples after resampling, "
            f"need offset {offset} + length {length} = {offset + length}: "
            "pass a smaller offset or length (--param offset=N, --param length=N) or a longer file"
        )
    window = np.asarray(signal[offset : offset + length], dtype=np.float64)
    if not np.all(np.isfinite(window)):
        raise UserInputError(
            f"audio target '{name}' has NaN or infinite samples in [{offset}, {offset + length}): "
            "pass a file with finite samples"
        )
    peak = float(np.abs(window).max())
    if peak < SILENCE_PEAK:
        raise UserInputError(
            f"audio target '{name}' is silent in samples [{offset}, {offset + length}) "
            f"(peak {peak:.2g} < {SILENCE_PEAK:g}): pass another offset (--param offset=N) or another file"
        )
    scaled = window / peak
    if float(scaled.var()) < 1e-12:  # a constant (DC) window: NMSE would divide by 0
        raise UserInputError(
            f"audio target '{name}' is constant in samples [{offset}, {offset + length}): "
            "pass another offset (--param offset=N) or another file"
        )
    return scaled


def load_target(target: str, offset: int, length: int = LENGTH, sample_rate: int = SAMPLE_RATE):
    """The scaled target window (float64, max |x| == 1) and its provenance dict."""
    if target.startswith(SYNTH_PREFIX):
        pcm = synthesise(target, sample_rate)
        spec = DEFAULT_TARGETS[target]
        provenance = {
            "source": "synthesised",
            "generator": f"{__name__}.{spec.make.__name__}",
            "description": spec.description,
            "seed": spec.seed,
            "duration_s": SYNTH_DURATION_S,
            "pcm": "int16",
            # of the little-endian 16-bit samples, i.e. the data a written WAV holds
            "sha256": hashlib.sha256(pcm.astype("<i2").tobytes()).hexdigest(),
        }
        return cut_and_scale(pcm / 32768.0, offset, length, target), provenance
    signal, provenance, total = read_audio(target, sample_rate, frames_needed=offset + length)
    return cut_and_scale(signal, offset, length, target, total=total), provenance


# --------------------------------------------------------------------------------------
# Metrics and plots, usable outside the task (the leaderboard reuses them).


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
    """Generate one target waveform from no input (see the module docstring).

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

    def datamodule(self, batch_size: int, seed: int, train_steps: int) -> AudioDataModule:
        # batch_size is ignored: a run fits one target, so every batch is that one
        # sequence. seed is unused: the data are fixed; the model's init takes the seed.
        from tasks.data import AudioDataModule

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
