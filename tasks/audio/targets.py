"""Audio targets: the built-in synthesised notes and audio files, cut to the scaled window.

Targets (the task's ``target`` parameter):
- ``"synth:<name>"``: one of ``DEFAULT_TARGETS``, five instrument-like notes the project
  synthesises itself with numpy from fixed seeds, offline and deterministically,
  stored as 16-bit PCM exactly as ``write_default_targets`` writes them to WAV; or one of
  ``TUNING_TARGETS``, two more notes that only the `tuned` protocol's search trains on.
- any other string is a path to an audio file libsndfile reads (WAV, FLAC, OGG, ...),
  any sample rate (resampled with scipy.signal.resample_poly), any channel count
  (mixed to mono by averaging), integer or float samples.

The window: ``offset`` and ``length`` count samples *at the task's sample rate*, i.e.
after resampling. ``offset=None`` means 0.1 s into the signal (skipping the attack),
resolved to an integer in the task's ``params()``. The window is then divided by its peak
|x| so that max |target| == 1; nothing else is done to it (no DC removal, no fades).

Numpy only at import; scipy and soundfile come in the functions that need them.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.errors import UserInputError

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


# Tuning targets: two more notes, never on a leaderboard, on which the `tuned` protocol
# searches its training settings (a run is never tuned on the data it is tested on).


def synth_reed(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Reed (clarinet-like) D3 (146.83 Hz): odd harmonics only, falling as 1/k, with a slight
    tremolo (4 Hz) and a soft 20 ms attack."""
    t = _time(sample_rate)
    f0 = 146.83
    y = np.zeros_like(t)
    for k in range(1, int(0.45 * sample_rate / f0) + 1, 2):
        y += np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
    return y * (1.0 + 0.05 * np.sin(2 * np.pi * 4.0 * t)) * _attack(t, 0.02)


def synth_marimba(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Marimba-like struck bar on A4 (440 Hz): the bar's partials at 1, 3.93 and 9.2 times the
    fundamental, the higher ones dying faster, and a 1 ms mallet click."""
    t = _time(sample_rate)
    y = np.zeros_like(t)
    for ratio, amplitude, decay_s in ((1.0, 1.0, 0.4), (3.93, 0.6, 0.15), (9.2, 0.3, 0.08)):
        y += amplitude * np.exp(-t / decay_s) * np.sin(2 * np.pi * 440.0 * ratio * t + rng.uniform(0, 2 * np.pi))
    click = rng.standard_normal(len(t)) * np.exp(-t / 0.001)
    return y * _attack(t, 0.0005) + 0.2 * click


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
TUNING_TARGETS: dict[str, SynthTarget] = {
    f"{SYNTH_PREFIX}{make.__name__.removeprefix('synth_')}": SynthTarget(make, SYNTH_SEED + len(DEFAULT_TARGETS) + i)
    for i, make in enumerate((synth_reed, synth_marimba))
}
BUILT_IN_TARGETS = {**DEFAULT_TARGETS, **TUNING_TARGETS}


def synthesise(name: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The whole default target ``name`` as 16-bit PCM samples (int16, mono).

    Normalised to a 0.9 peak before quantising; the int16 samples are what
    ``write_default_targets`` writes and what the task cuts its window from.
    """
    if name not in BUILT_IN_TARGETS:
        raise UserInputError(
            f"unknown built-in audio target {name!r}: use one of {', '.join(BUILT_IN_TARGETS)} "
            "or a path to a WAV/FLAC/OGG file"
        )
    spec = BUILT_IN_TARGETS[name]
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
        spec = BUILT_IN_TARGETS[target]
        provenance = {
            "source": "synthesised",
            "generator": f"tasks.audio.{spec.make.__name__}",  # its public name: stable across moves
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
