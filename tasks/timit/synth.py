"""A synthetic stand-in for TIMIT, built offline from a seed, in TIMIT's on-disk layout.

TIMIT is licensed by the LDC and cannot be shipped, so demos, CI and the tests run the
same reader / selection / feature pipeline on this corpus instead. It is never TIMIT:
the task that uses it is called "synthwords" everywhere.

What it mimics, so the pipeline is exercised for real:
- layout ``TRAIN|TEST/DR<n>/<speaker>/<utt>.WAV|.WRD|.PHN|.TXT``; with case="mixed" the
  TRAIN tree is upper case and the test tree lower case (distributions differ);
- NIST SPHERE 16 kHz 16-bit audio, mostly little endian, every third speaker big endian;
- each speaker says every word at least once inside short "sentences" with filler words
  and pauses, and two words twice (the selection takes each speaker's first occurrence).

What it sounds like: a word is a word-specific onset (a noise burst and a vowel-like
harmonic sound with its own formants) followed by a suffix shared by its group of five,
as in the paper's task: the end of a word tells only its group. Speakers differ in pitch,
vocal-tract length (formant scale), speed and loudness.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np

from tasks.timit.corpus import GROUPS, WORDS

SYNTH_VERSION = 1  # bump when the generated audio changes
RATE = 16000
FILLERS = ("the", "a", "and", "of", "in", "we")


@dataclasses.dataclass(frozen=True)
class _Phone:
    label: str  # written to the .PHN file
    kind: str  # "voiced" (harmonics under two formants) | "noise" (a band of noise)
    f1: float  # voiced: first formant; noise: band centre (Hz)
    f2: float  # voiced: second formant; noise: band width (Hz)
    dur: float  # seconds, before the speaker's speed factor


@dataclasses.dataclass(frozen=True)
class _Speaker:
    sid: str
    f0: float
    formant_scale: float
    speed: float
    loudness: float
    endian: str  # of the SPHERE samples, as soundfile names it: "LITTLE" | "BIG"


def _rng(seed: int, *keys: int) -> np.random.Generator:
    # one independent stream per purpose, so changing one part leaves the others as they are
    return np.random.default_rng([seed, *keys])


def _vocabulary(seed: int, words) -> dict[str, list[_Phone]]:
    rng = _rng(seed, 0)
    phones: dict[str, list[_Phone]] = {}
    for g, group in enumerate(GROUPS):
        suffix = [
            _Phone(f"s{g}a", "voiced", rng.uniform(300, 800), rng.uniform(900, 2400), 0.10),
            _Phone(f"s{g}b", "noise" if g % 2 else "voiced", rng.uniform(2500, 5500),
                   rng.uniform(400, 1200), 0.09),
        ]
        # Spread the five onsets of a group over distinct bands so they stay tellable apart
        # across speakers (whose formant scale shifts everything by up to ~20%).
        bursts = rng.permutation([1800.0, 2700.0, 3600.0, 4700.0, 6000.0])
        seconds = rng.permutation([850.0, 1200.0, 1600.0, 2000.0, 2500.0])
        for i, word in enumerate(group):
            onset = [
                _Phone(f"o{g}{i}a", "noise", bursts[i] * rng.uniform(0.95, 1.05), 500.0, 0.04),
                _Phone(f"o{g}{i}b", "voiced", rng.uniform(280, 820),
                       seconds[i] * rng.uniform(0.95, 1.05), 0.12),
            ]
            phones[word] = onset + suffix
    for j, word in enumerate(FILLERS):
        phones[word] = [_Phone(f"f{j}", "voiced", rng.uniform(300, 700),
                               rng.uniform(1000, 2200), 0.08)]
    return {w: p for w, p in phones.items() if w in words or w in FILLERS}


def _speaker(seed: int, i: int) -> _Speaker:
    rng = _rng(seed, 1, i)
    female = i % 2 == 0
    return _Speaker(
        sid=f"{'F' if female else 'M'}S{chr(65 + i // 26)}{chr(65 + i % 26)}0",
        f0=rng.uniform(170, 230) if female else rng.uniform(95, 140),
        formant_scale=rng.uniform(1.0, 1.12) if female else rng.uniform(0.9, 1.0),
        speed=rng.uniform(0.8, 1.25),
        loudness=rng.uniform(0.3, 0.8),
        endian="BIG" if i % 3 == 2 else "LITTLE",
    )


def _ramp(x: np.ndarray) -> np.ndarray:
    # 8 ms raised-cosine fade in/out: no clicks at phone boundaries
    n = min(len(x) // 2, int(0.008 * RATE))
    if n > 0:
        fade = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))
        x[:n] *= fade
        x[-n:] *= fade[::-1]
    return x


def _render(phone: _Phone, spk: _Speaker, n: int, rng: np.random.Generator) -> np.ndarray:
    freq = np.fft.rfftfreq(n, 1 / RATE)
    if phone.kind == "noise":
        source = rng.standard_normal(n)
        shape = np.exp(-0.5 * ((freq - phone.f1 * spk.formant_scale) / phone.f2) ** 2)
    else:
        # a source-filter vowel: glottal pulses at a slightly falling pitch, shaped by two
        # formant resonances and the source's spectral tilt (FFT filtering: fast)
        cycles = np.cumsum(spk.f0 * (1.0 + 0.04 * np.linspace(0.5, -0.5, n))) / RATE
        source = np.diff(np.floor(cycles), prepend=0.0)  # 1 at the start of each period
        shape = 1.0 / np.sqrt(1.0 + freq / 100.0)
        shape = shape * sum(
            1.0 / (1.0 + ((freq - f) / (60 + 0.1 * f)) ** 2)
            for f in (phone.f1 * spk.formant_scale, phone.f2 * spk.formant_scale)
        )
    x = np.fft.irfft(np.fft.rfft(source) * shape, n)
    x /= np.sqrt(np.mean(x**2)) + 1e-12
    if phone.kind == "noise":
        x *= 0.5
    return _ramp(x)


def _utterance(sentence: list[str], vocab, spk: _Speaker, rng: np.random.Generator):
    """Audio (int16) and the .PHN and .WRD lines of one sentence."""
    pieces, phn, wrd, pos = [], [], [], 0

    def silence(label: str, seconds: float):
        nonlocal pos
        n = int(seconds * RATE)
        pieces.append(np.zeros(n))
        phn.append((pos, pos + n, label))
        pos += n

    silence("h#", rng.uniform(0.12, 0.2))
    for w, word in enumerate(sentence):
        if w:
            silence("pau", rng.uniform(0.04, 0.12))
        start = pos
        for phone in vocab[word]:
            n = int(phone.dur * spk.speed * rng.uniform(0.9, 1.1) * RATE)
            pieces.append(_render(phone, spk, n, rng))
            phn.append((pos, pos + n, phone.label))
            pos += n
        wrd.append((start, pos, word))
    silence("h#", rng.uniform(0.12, 0.2))
    x = np.concatenate(pieces)
    x = x / np.abs(x).max() * spk.loudness + rng.normal(0, 0.002, len(x))  # room noise
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16), phn, wrd


def _sentences(seed: int, i: int, words) -> list[list[str]]:
    rng = _rng(seed, 2, i)
    order = [str(w) for w in rng.permutation(list(words))]
    order += [str(w) for w in rng.choice(list(words), size=min(2, len(words)), replace=False)]
    sentences = []
    for k in range(0, len(order), 3):
        chunk = order[k : k + 3]
        chunk.insert(int(rng.integers(0, len(chunk) + 1)), str(rng.choice(FILLERS)))
        sentences.append(chunk)
    return sentences


def write_synthetic_corpus(root, seed: int = 0, n_speakers: int = 8, case: str = "mixed",
                           words=WORDS) -> Path:
    """Write the stand-in corpus under ``root`` (which must not exist yet); return root.

    Deterministic: the same arguments give byte-identical files. ``case`` is "upper",
    "lower" or "mixed" (TRAIN tree upper case, test tree lower case). ``words`` lets tests
    leave words out. About 70% of the speakers go to TRAIN, the rest to TEST.
    """
    import soundfile as sf

    if case not in ("upper", "lower", "mixed"):
        raise ValueError(f"case must be upper, lower or mixed, not {case!r}")
    root = Path(root)
    root.mkdir(parents=True)
    vocab = _vocabulary(seed, set(words))
    n_train = max(1, round(0.7 * n_speakers))
    for i in range(n_speakers):
        spk = _speaker(seed, i)
        split = "TRAIN" if i < n_train else "TEST"
        upper = case == "upper" or (case == "mixed" and split == "TRAIN")
        name = (lambda s: s.upper()) if upper else (lambda s: s.lower())
        folder = root / name(split) / name(f"DR{1 + i % 8}") / name(spk.sid)
        folder.mkdir(parents=True)
        rng = _rng(seed, 3, i)
        for k, sentence in enumerate(_sentences(seed, i, words)):
            utt = f"SX{100 + 10 * i + k}"
            audio, phn, wrd = _utterance(sentence, vocab, spk, rng)
            # libsndfile writes TIMIT's form: a 1024-byte header, then the 16-bit samples
            sf.write(folder / name(f"{utt}.WAV"), audio, RATE, format="NIST", subtype="PCM_16",
                     endian=spk.endian)
            text = " ".join(sentence).capitalize() + "."
            (folder / name(f"{utt}.TXT")).write_text(f"0 {len(audio)} {text}\n")
            (folder / name(f"{utt}.PHN")).write_text("".join(f"{a} {b} {p}\n" for a, b, p in phn))
            (folder / name(f"{utt}.WRD")).write_text("".join(f"{a} {b} {w}\n" for a, b, w in wrd))
    return root


def ensure_synthetic_corpus(cache_dir, seed: int = 0, n_speakers: int = 8) -> Path:
    """The stand-in corpus under ``cache_dir``, built once (atomically) and then reused."""
    root = Path(cache_dir).expanduser() / f"corpus-v{SYNTH_VERSION}-seed{seed}-speakers{n_speakers}"
    if (root / "COMPLETE").is_file():
        return root
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_synthetic_corpus(tmp, seed=seed, n_speakers=n_speakers)
    (tmp / "COMPLETE").write_text("written by tasks.timit.synth; not TIMIT\n")
    shutil.rmtree(root, ignore_errors=True)  # an incomplete earlier attempt
    try:
        os.replace(tmp, root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return root
