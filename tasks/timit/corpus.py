"""TIMIT on disk: SPHERE audio, the LDC folder layout, word selection, MFCCs, feature cache.

The pipeline, in the order `load_word_features` runs it:

1. find the corpus: ``<root>/TRAIN|TEST/DR1..DR8/<speaker>/<utt>.WAV`` with ``.WRD`` word
   alignments beside; every name is matched case-insensitively because distributions
   differ (the LDC discs are upper case, many copies are lower case);
2. read every .WRD and choose 7 speakers per word (`select_words`, rule below);
3. cache key (`cache_key`): the feature settings, the choice of examples and the sha256
   of every chosen .WAV file's bytes, so a file edited in place changes the key whatever
   its size and mtime; a cache entry carries checksums of its own files, verified before
   it is used (a damaged entry is rebuilt, never trusted);
4. on a miss, cut the words out of the NIST SPHERE audio (decoded by libsndfile through
   `soundfile`), compute 12 MFCCs + log energy per 10 ms frame (`mfcc_features`) and
   store them, un-normalised, with HF `datasets` (Arrow) together with the choice of
   examples and a content fingerprint of the audio actually used.

The content fingerprint (not the path, not mtimes) is what identifies the corpus in a
run's config, so two copies of the same TIMIT give the same run id. Normalisation to zero
mean / unit variance uses training statistics and is applied by the task, not cached.

Everything a user can get wrong raises `UserInputError` with one line saying what is
missing and how to fix it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from tasks.errors import UserInputError

log = logging.getLogger(__name__)

# The paper's 25 words: 5 groups sharing a suffix, so the end of a word says only which
# group it is in and the network has to remember how the word began.
GROUPS: tuple[tuple[str, ...], ...] = (
    ("making", "walking", "cooking", "looking", "working"),
    ("biblical", "cyclical", "technical", "classical", "critical"),
    ("tradition", "addition", "audition", "recognition", "competition"),
    ("musicians", "discussions", "regulations", "accusations", "conditions"),
    ("subway", "leeway", "freeway", "highway", "hallway"),
)
WORDS: tuple[str, ...] = tuple(w for group in GROUPS for w in group)
EXAMPLES_PER_WORD = 7  # from 7 different speakers
TRAIN_PER_WORD = 5  # the other 2 are the test set: 125 train, 50 test sequences

SELECTION_RULE = (
    "v1: per word, each speaker's first occurrence in (utterance id, start sample) order; "
    "speakers ranked by sha256('<word>/<SPEAKER>'); the first 7 are used, ranks 0-4 train, "
    "5-6 test"
)
# Bump when the extracted features change for the same corpus and settings.
FEATURES_VERSION = 1

ROOT_NOT_SET = (
    "TIMIT root not set: pass --timit-root DIR or set TIMIT_ROOT; "
    "TIMIT is licensed by the LDC and not shipped"
)


# --------------------------------------------------------------------------------------
# Audio: NIST SPHERE (or RIFF WAV), decoded by libsndfile

SPHERE_MAGIC = b"NIST_1A"
SPHERE_HEADER_BYTES = 1024  # TIMIT's header size, and the only one libsndfile accepts
REPLACE_FILE = "replace it with the file from an intact TIMIT copy"


def _file_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(SPHERE_HEADER_BYTES)
    except OSError as e:
        raise UserInputError(
            f"audio file {path} cannot be opened ({e.strerror}): check the TIMIT copy"
        ) from None


def sphere_fields(head: bytes) -> dict[str, str] | None:
    """The fields of a SPHERE file's ASCII header (name -> value as text); None when
    ``head`` does not start with NIST_1A.

    libsndfile decodes the audio. The header is read here only for what libsndfile does
    not tell: that a file is compressed (it says just "unimplemented format") and that the
    header promises more samples than the file holds (it reads the short file silently)."""
    if not head.startswith(SPHERE_MAGIC):
        return None
    fields = {}
    for line in head.decode("ascii", errors="replace").split("\n")[2:]:  # after magic, size
        if line.strip() == "end_head":
            break
        name, _, typed_value = line.partition(" ")  # "name -type value"
        value = typed_value.partition(" ")[2].strip()
        if name and value and not name.startswith(";"):
            fields[name] = value
    return fields


def _check_sphere(path: Path, fields: dict[str, str]) -> int | None:
    """Refuse a compressed or truncated SPHERE file; return the header's sample count
    (None when it gives none: then the file's length counts, as libsndfile has it)."""
    coding = fields.get("sample_coding", "pcm").lower()
    packing = fields.get("sample_byte_format", "").lower()
    # TIMIT on some discs is shorten-compressed; wavpack and shortpack are SPHERE's others
    if any(c in coding for c in ("shorten", "wavpack")) or "shortpack" in packing:
        named = f"sample_coding '{coding}'" if "shortpack" not in packing \
            else f"sample_byte_format '{packing}'"
        raise UserInputError(
            f"audio file {path} is compressed NIST SPHERE ({named}), which libsndfile cannot "
            "read: decompress the corpus with sph2pipe to uncompressed SPHERE or WAV "
            "(`sph2pipe -f sph IN OUT` or `-f wav` for every .WAV) and pass that copy with --timit-root"
        )
    try:
        count = int(fields["sample_count"])
        frame_bytes = int(fields.get("sample_n_bytes", 2)) * int(fields.get("channel_count", 1))
    except (KeyError, ValueError):
        return None
    held = path.stat().st_size - SPHERE_HEADER_BYTES
    if held < count * frame_bytes:
        raise UserInputError(
            f"audio file {path} is truncated: its SPHERE header promises {count} samples "
            f"({count * frame_bytes} data bytes) but the file holds {max(held, 0)} data bytes: "
            f"{REPLACE_FILE}"
        )
    return count


def read_audio(path) -> tuple[np.ndarray, int]:
    """Mono float64 samples in [-1, 1) and the rate, from SPHERE or (converted) RIFF WAV.

    16-bit PCM (all of TIMIT) is read as int16 and divided by 32768: the samples the
    features were always computed from, whatever libsndfile's own float scaling."""
    path = Path(path)
    head = _file_head(path)
    fields = sphere_fields(head)
    # bytes after the promised samples are not audio (the LDC reader ignores them too)
    stop = _check_sphere(path, fields) if fields is not None else None
    import soundfile as sf

    try:
        pcm16 = sf.info(path).subtype == "PCM_16"
        samples, rate = sf.read(path, dtype="int16" if pcm16 else "float64", stop=stop,
                                always_2d=True)
    except sf.SoundFileError as e:
        why = getattr(e, "error_string", None) or " ".join(str(e).split())
        what = "is not readable NIST SPHERE" if fields is not None else \
            f"is neither NIST SPHERE nor other audio (it starts with {head[:7]!r})"
        raise UserInputError(f"audio file {path} {what}: libsndfile says '{why}'; "
                             f"{REPLACE_FILE}") from None
    mono = samples[:, 0]  # TIMIT is mono; keep the first channel of anything else
    return (mono.astype(np.float64) / 32768.0 if pcm16 else mono), int(rate)


# --------------------------------------------------------------------------------------
# The corpus layout (case-insensitive)


@dataclasses.dataclass(frozen=True)
class Utterance:
    uid: str  # canonical id, upper case, e.g. "TRAIN/DR1/FCJF0/SX127"
    speaker: str  # upper case, e.g. "FCJF0" (TIMIT speaker ids are unique corpus-wide)
    wrd: Path
    wav: Path | None  # None: the .WRD has no audio beside it


def resolve_root(timit_root) -> Path:
    """The corpus root from the argument or TIMIT_ROOT; the folder holding TRAIN/TEST."""
    root = timit_root or os.environ.get("TIMIT_ROOT")
    if not root:
        raise UserInputError(ROOT_NOT_SET)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserInputError(
            f"TIMIT root {root} does not exist or is not a folder: pass --timit-root DIR "
            "(or TIMIT_ROOT) naming the folder that holds TRAIN/ and TEST/"
        )
    # Accept the folder above as well (e.g. the LDC disc's timit/TIMIT/TRAIN).
    for base in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
        if _split_dirs(base):
            return base
    raise UserInputError(
        f"TIMIT root {root} is not a TIMIT layout (no TRAIN/ or TEST/ folder with DR1..DR8 "
        "inside): pass the folder that holds TRAIN/ and TEST/"
    )


def _split_dirs(base: Path) -> list[Path]:
    try:
        children = sorted(base.iterdir())
    except OSError:
        return []
    return [p for p in children if p.is_dir() and p.name.upper() in ("TRAIN", "TEST")
            and any(_is_dialect_dir(d) for d in p.iterdir())]


def _is_dialect_dir(p: Path) -> bool:
    return p.is_dir() and re.fullmatch(r"DR\d+", p.name.upper()) is not None


def scan_corpus(base: Path) -> list[Utterance]:
    """All utterances that have a .WRD, with their .WAV where there is one."""
    utterances = []
    for split in _split_dirs(base):
        for dialect in sorted(filter(_is_dialect_dir, split.iterdir())):
            for speaker in sorted(p for p in dialect.iterdir() if p.is_dir()):
                by_stem: dict[str, dict[str, Path]] = {}
                for f in sorted(speaker.iterdir()):
                    ext = f.suffix.upper()
                    if ext in (".WAV", ".WRD") and f.is_file():
                        # first of any names equal up to case wins (sorted, deterministic)
                        by_stem.setdefault(f.stem.upper(), {}).setdefault(ext, f)
                for stem, files in sorted(by_stem.items()):
                    if ".WRD" not in files:
                        continue
                    uid = "/".join(p.name.upper() for p in (split, dialect, speaker)) + "/" + stem
                    utterances.append(Utterance(uid, speaker.name.upper(), files[".WRD"],
                                                files.get(".WAV")))
    if not utterances:
        raise UserInputError(
            f"TIMIT root {base} has no .WRD word alignments under TRAIN|TEST/DR*/<speaker>/: "
            "pass the root of a complete TIMIT copy"
        )
    return utterances


def read_wrd(path: Path) -> list[tuple[int, int, str]]:
    """(start_sample, end_sample, word) lines of a TIMIT .WRD file; words lower-cased."""
    out = []
    for n, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            start, end, word = int(parts[0]), int(parts[1]), parts[2]
        except (ValueError, IndexError):
            raise UserInputError(
                f"word alignment {path} line {n} is not 'start end word': "
                "replace it with the file from an intact TIMIT copy"
            ) from None
        out.append((start, end, word.lower()))
    return out


# --------------------------------------------------------------------------------------
# Which examples


@dataclasses.dataclass(frozen=True)
class Choice:
    """One chosen word example; written beside results so anyone can check the data."""

    word: str
    label: int  # index into WORDS
    split: str  # "train" | "test"
    rank: int  # 0..6 in the speaker ranking of this word
    speaker: str
    utterance: str  # canonical upper-case id, e.g. "TEST/DR3/MJMP0/SX95"
    path: str  # the audio file relative to the root, as named on disk
    start: int  # sample range [start, end) from the .WRD file
    end: int


def _speaker_rank(word: str, speaker: str) -> str:
    return hashlib.sha256(f"{word}/{speaker}".encode()).hexdigest()


def select_words(utterances: list[Utterance], base: Path) -> list[Choice]:
    """7 examples per word from 7 different speakers, by the rule in SELECTION_RULE.

    Ranking speakers by a hash of (word, speaker) instead of by name is deterministic but
    not biased towards the speakers that sort first (TIMIT ids start with F or M, so
    alphabetical order would pick mostly women)."""
    first: dict[str, dict[str, tuple]] = {w: {} for w in WORDS}  # word -> speaker -> occ
    for utt in sorted(utterances, key=lambda u: u.uid):
        for start, end, word in read_wrd(utt.wrd):
            if word in first:
                occ = (utt.uid, start, end, utt)
                prev = first[word].get(utt.speaker)
                if prev is None or occ[:2] < prev[:2]:
                    first[word][utt.speaker] = occ

    missing = [w for w in WORDS if not first[w]]
    if missing:
        raise UserInputError(
            f"TIMIT at {base} lacks {len(missing)} of the 25 words in its .WRD files: "
            f"{', '.join(missing)}; pass the root of a complete TIMIT copy (TRAIN and TEST)"
        )
    short = [(w, len(first[w])) for w in WORDS if len(first[w]) < EXAMPLES_PER_WORD]
    if short:
        listed = ", ".join(f"{w} ({n} speakers)" for w, n in short)
        raise UserInputError(
            f"TIMIT at {base} has fewer than {EXAMPLES_PER_WORD} speakers for "
            f"{len(short)} word(s): {listed}; pass the root of a complete TIMIT copy "
            "(TRAIN and TEST)"
        )

    choices = []
    for label, word in enumerate(WORDS):
        speakers = sorted(first[word], key=lambda s: _speaker_rank(word, s))
        for rank, speaker in enumerate(speakers[:EXAMPLES_PER_WORD]):
            uid, start, end, utt = first[word][speaker]
            if utt.wav is None:
                raise UserInputError(
                    f"TIMIT utterance {utt.wrd} has a .WRD but no .WAV beside it: "
                    "restore the audio from an intact TIMIT copy"
                )
            choices.append(Choice(
                word=word, label=label, split="train" if rank < TRAIN_PER_WORD else "test",
                rank=rank, speaker=speaker, utterance=uid,
                path=utt.wav.relative_to(base).as_posix(), start=start, end=end,
            ))
    return choices


def cut_segments(choices: list[Choice], base: Path) -> tuple[list[np.ndarray], int]:
    """The audio of every chosen word, and the (single) sample rate."""
    segments, rates = [], set()
    for c in choices:
        samples, rate = read_audio(base / c.path)  # a file rarely holds two chosen words
        if not 0 <= c.start < c.end <= len(samples) + 1:
            # tolerate an end index one past the audio (an inclusive end); more is an error
            raise UserInputError(
                f"word '{c.word}' at samples {c.start}-{c.end} in {base / c.path} lies outside "
                f"its {len(samples)} samples: the .WRD and .WAV do not match; restore both "
                "from an intact TIMIT copy"
            )
        segments.append(samples[c.start : min(c.end, len(samples))])
        rates.add(rate)
    if len(rates) != 1:
        raise UserInputError(
            f"TIMIT at {base}: the chosen words have different sample rates {sorted(rates)}: "
            "use one consistent copy of the corpus (TIMIT is 16 kHz)"
        )
    return segments, rates.pop()


def content_fingerprint(choices: list[Choice], segments: list[np.ndarray], rate: int) -> str:
    """sha256 of what the task uses: the choice of examples and their samples.

    Independent of where the corpus lies, of its name case, of mtimes and of file format,
    so it can stand in the run config for the (licensed, unshippable) corpus."""
    h = hashlib.sha256(f"{SELECTION_RULE}|{rate}\n".encode())
    for c, seg in zip(choices, segments, strict=True):
        h.update(f"{c.word}|{c.split}|{c.speaker}|{c.utterance}|{c.start}|{c.end}\n".encode())
        h.update(np.round(seg * 32768).astype("<i4").tobytes())
    return h.hexdigest()


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
    """$CWBENCH_CACHE/<task> if set (the bench-wide cache root), else ~/.cache/cwbench/<task>."""
    root = os.environ.get("CWBENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "cwbench") / task_name


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
