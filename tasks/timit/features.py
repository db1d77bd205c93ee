"""The word tasks' features: MFCCs of the chosen words, and their cache.

`load_word_features` runs the pipeline: find the corpus and choose the examples
(`tasks.timit.corpus`); the cache key (`cache_key`): the feature settings, the choice of
examples and the sha256 of every chosen .WAV file's bytes, so a file edited in place
changes the key whatever its size and mtime; on a miss, cut the words out of the audio,
compute 12 MFCCs + log energy per 10 ms frame (`mfcc_features`) and store them,
un-normalised, with HF `datasets` (Arrow) together with the choice of examples and a
content fingerprint of the audio actually used. A cache entry carries checksums of its own
files, verified before it is used (a damaged entry is rebuilt, never trusted).
Normalisation to zero mean / unit variance uses training statistics and is applied by the
task, not cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from tasks.errors import UserInputError
from tasks.timit.corpus import (
    SELECTION_RULE,
    Choice,
    content_fingerprint,
    cut_segments,
    resolve_root,
    scan_corpus,
    select_words,
)

log = logging.getLogger(__name__)

# Bump when the extracted features change for the same corpus and settings.
FEATURES_VERSION = 1


# --------------------------------------------------------------------------------------
# Features


# windows scipy.signal.get_window takes by name alone (checked in tests/test_timit.py)
KNOWN_WINDOWS = ("hamming", "hann", "blackman", "bartlett", "boxcar", "triang")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """MFCC settings; every field is a task param (so it enters the run config).

    Per frame: [energy, c1..c_n_mfcc]. energy="log" is the natural log of the frame's
    energy (sum of squared pre-emphasised samples before windowing), which replaces c0 as
    in HTK/python_speech_features; energy="c0" keeps the 0th cepstral coefficient instead.
    No liftering: it scales each coefficient by a constant, which the per-channel
    normalisation removes anyway.
    """

    n_mfcc: int = 12
    energy: str = "log"  # "log" | "c0"
    preemphasis: float = 0.97
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_mels: int = 26
    window: str = "hamming"

    def __post_init__(self):
        def bad(field, why):
            return UserInputError(f"feature setting {field}={getattr(self, field)!r} is invalid: {why}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        if not is_int(self.n_mfcc) or self.n_mfcc < 1:
            raise bad("n_mfcc", "give a positive integer (the paper uses 12)")
        if not is_int(self.n_mels) or self.n_mels <= self.n_mfcc:
            raise bad("n_mels", "give an integer above n_mfcc (default 26)")
        if self.energy not in ("log", "c0"):
            raise bad("energy", "use 'log' or 'c0'")
        for field, low, high in (("preemphasis", 0.0, 1.0), ("win_ms", 0.0, math.inf), ("hop_ms", 0.0, math.inf)):
            value = getattr(self, field)
            if not (is_int(value) or isinstance(value, float)) or not low <= value < high \
                    or (field != "preemphasis" and value == 0):
                raise bad(field, f"give a number in {'[0, 1)' if high == 1.0 else '(0, inf)'}")
            # 25 and 25.0 are the same setting: one form, so they give one run id and cache entry
            object.__setattr__(self, field, float(value))
        if self.window in KNOWN_WINDOWS:
            return  # no need to import scipy (seconds) to accept the usual names
        import scipy.signal

        try:
            scipy.signal.get_window(self.window, 8)
        except (ValueError, TypeError):
            raise bad("window", "name a scipy window such as 'hamming' or 'hann'") from None

    @property
    def n_features(self) -> int:
        return self.n_mfcc + 1

    @classmethod
    def from_params(cls, params: dict) -> FeatureConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise UserInputError(
                f"unknown timit feature setting(s) {', '.join(unknown)}: "
                f"known are {', '.join(sorted(known))}"
            )
        return cls(**params)


def mfcc_features(signal: np.ndarray, rate: int, cfg: FeatureConfig) -> np.ndarray:
    """(T, n_mfcc + 1) float32 features of one word; T = 1 + (N - win) // hop frames.

    Frames are the plain win-sample windows (no centring, no padding at the ends, as in
    HTK); a word shorter than one window is zero-padded to one frame."""
    import librosa

    win = max(2, round(cfg.win_ms * rate / 1000))
    hop = max(1, round(cfg.hop_ms * rate / 1000))
    n_fft = 1 << (win - 1).bit_length()  # next power of two: 512 for 400 samples
    y = np.asarray(signal, dtype=np.float64)
    # y'[n] = y[n] - coef * y[n-1], with y'[0] = y[0] (zi=0, as python_speech_features)
    y = librosa.effects.preemphasis(y, coef=cfg.preemphasis, zi=[0.0])
    if len(y) < win:
        y = np.pad(y, (0, win - len(y)))
    frames = librosa.util.frame(y, frame_length=win, hop_length=hop, axis=0)  # (T, win)
    tiny = np.finfo(np.float64).tiny * 1e10  # floor for logs of silent frames
    log_energy = np.log(np.maximum((frames**2).sum(axis=1), tiny))
    window = librosa.filters.get_window(cfg.window, win, fftbins=True)
    power = np.abs(np.fft.rfft(frames * window, n=n_fft, axis=1)) ** 2 / n_fft
    mel = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=cfg.n_mels, htk=True, norm=None,
                              dtype=np.float64)
    log_mel = np.log(np.maximum(power @ mel.T, tiny))  # (T, n_mels)
    cep = librosa.feature.mfcc(S=log_mel.T, n_mfcc=cfg.n_mfcc + 1, dct_type=2, norm="ortho").T
    if cfg.energy == "log":
        cep[:, 0] = log_energy
    return cep.astype(np.float32)


# --------------------------------------------------------------------------------------
# The cache


def default_cache_dir(task_name: str) -> Path:
    """<the bench's cache root (tasks.base.cache_root)>/<task>."""
    from tasks.base import cache_root

    return cache_root() / task_name


@dataclasses.dataclass
class WordFeatures:
    """The extracted data set: un-normalised features of the 175 chosen words."""

    choices: list[Choice]
    features: list[np.ndarray]  # (T_i, n_features) float32, same order as choices
    sample_rate: int
    fingerprint: str  # content fingerprint of the corpus data used (see content_fingerprint)
    cache_path: Path
    cache_hit: bool
    seconds: float  # wall time of load_word_features


_INFO = "cwbench_cache.json"
# sha256 of every other file of the entry, written last; checked before the entry is used
_CHECKSUMS = "cwbench_sha256.json"


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cache_key(cfg: FeatureConfig, choices: list[Choice], base: Path) -> str:
    """Everything the features are computed from, by content: the settings, the choice of
    examples and the sha256 of each chosen audio file.

    The choice is a function of every .WRD file (and of which .WAV files exist), so it
    stands for them; of the audio only the chosen files are hashed (in TIMIT about 175 of
    6300, some 17 MB instead of 600 MB), since no other .WAV reaches the features. Sizes
    and mtimes play no part: an in-place edit that keeps both still changes the key."""
    audio = {}
    for c in choices:
        if c.path in audio:  # a file rarely holds two chosen words
            continue
        try:
            audio[c.path] = _sha256_file(base / c.path)
        except OSError as e:
            raise UserInputError(
                f"audio file {base / c.path} cannot be read ({e.strerror}): check the TIMIT copy"
            ) from None
    return hashlib.sha256(json.dumps(
        {"version": FEATURES_VERSION, "rule": SELECTION_RULE, "features": dataclasses.asdict(cfg),
         "choices": [dataclasses.asdict(c) for c in choices], "audio": audio},
        sort_keys=True,
    ).encode()).hexdigest()[:24]


def load_word_features(timit_root, cfg: FeatureConfig, cache_dir) -> WordFeatures:
    """Features of the chosen words, from the cache when the corpus content and settings match."""
    t0 = time.perf_counter()
    base = resolve_root(timit_root)
    choices = select_words(scan_corpus(base), base)
    path = Path(cache_dir).expanduser() / f"features-{cache_key(cfg, choices, base)}"

    if path.is_dir():
        cached = _load_verified(path, choices)
        if cached is not None:
            features, info = cached
            log.info("timit features: cache hit %s", path)
            return WordFeatures(choices, features, info["sample_rate"], info["fingerprint"],
                                path, True, time.perf_counter() - t0)

    log.info("timit features: cache miss, extracting from %s", base)
    segments, rate = cut_segments(choices, base)
    features = [mfcc_features(seg, rate, cfg) for seg in segments]
    fingerprint = content_fingerprint(choices, segments, rate)
    info = {"version": FEATURES_VERSION, "selection_rule": SELECTION_RULE,
            "features": dataclasses.asdict(cfg), "sample_rate": rate,
            "fingerprint": fingerprint, "corpus_root": str(base)}
    try:
        _save(path, choices, features, info)
    except OSError as e:  # an unwritable cache costs time, not the run
        log.warning("timit features: could not write cache %s (%s)", path, e)
    return WordFeatures(choices, features, rate, fingerprint, path, False,
                        time.perf_counter() - t0)


def _load_verified(path: Path, choices: list[Choice]) -> tuple[list[np.ndarray], dict] | None:
    """The entry's features and info if its files are as written and hold this choice of
    examples; otherwise None, after a warning and removing the entry so it is rebuilt."""
    problem = _checksum_problem(path)
    if problem is None:
        try:
            cached_choices, features, info = _load(path)
            if cached_choices == choices:
                return features, info
            problem = "it holds another choice of examples"
        except Exception as e:  # whatever the reader raises on a bad entry: rebuild
            problem = f"unreadable: {' '.join(str(e).split())}"
    log.warning("timit features: cache entry %s is damaged (%s); rebuilding it", path, problem)
    shutil.rmtree(path, ignore_errors=True)
    return None


def _write_checksums(folder: Path) -> None:
    sums = {p.relative_to(folder).as_posix(): _sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / _CHECKSUMS).write_text(json.dumps(sums, indent=1, sort_keys=True))


def _checksum_problem(folder: Path) -> str | None:
    """None when every file listed at save time is there with its content; else what is not."""
    try:
        sums = json.loads((folder / _CHECKSUMS).read_text())
    except (OSError, ValueError) as e:
        return f"no readable {_CHECKSUMS}: {type(e).__name__}"
    # the listing must cover what _load reads; a damaged name shows up as a missing file
    if not isinstance(sums, dict) or not {_INFO, "selection.json"} <= set(sums) \
            or not any(name.startswith("data/") for name in sums):
        return f"{_CHECKSUMS} does not list the entry's files"
    for name, digest in sorted(sums.items()):
        if not (folder / name).is_file():
            return f"{name} is missing"
        if _sha256_file(folder / name) != digest:
            return f"{name} differs from its checksum"
    return None


def _save(path: Path, choices: list[Choice], features: list[np.ndarray], info: dict) -> None:
    import datasets

    n_feat = features[0].shape[1]
    schema = datasets.Features({
        **{f.name: datasets.Value("int64" if f.type == "int" else "string")
           for f in dataclasses.fields(Choice)},
        "features": datasets.Array2D(shape=(None, n_feat), dtype="float32"),
    })
    columns = {f.name: [getattr(c, f.name) for c in choices] for f in dataclasses.fields(Choice)}
    table = datasets.Dataset.from_dict({**columns, "features": features}, features=schema)

    # Write beside, then rename: a killed run never leaves a half-written entry that
    # looks complete (the info file is written last, inside the temporary folder).
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        table.save_to_disk(str(tmp / "data"))
    finally:
        if bars:
            datasets.enable_progress_bars()
    (tmp / "selection.json").write_text(
        json.dumps([dataclasses.asdict(c) for c in choices], indent=1))
    (tmp / _INFO).write_text(json.dumps(info, indent=1, sort_keys=True))
    _write_checksums(tmp)
    try:
        os.replace(tmp, path)
    except OSError:  # another process finished the same entry first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (path / _CHECKSUMS).is_file():
            raise


def _load(path: Path) -> tuple[list[Choice], list[np.ndarray], dict]:
    import datasets

    info = json.loads((path / _INFO).read_text())
    table = datasets.load_from_disk(str(path / "data"))
    names = [f.name for f in dataclasses.fields(Choice)]
    columns = table.select_columns(names).to_dict()  # whole columns at once: rows are slow
    choices = [Choice(*row) for row in zip(*(columns[n] for n in names), strict=True)]
    features = [np.asarray(a, dtype=np.float32)
                for a in table.with_format("numpy")[:]["features"]]
    return choices, features, info
