"""TIMIT on disk: SPHERE audio, the LDC folder layout, which word examples are used.

1. find the corpus: ``<root>/TRAIN|TEST/DR1..DR8/<speaker>/<utt>.WAV`` with ``.WRD`` word
   alignments beside; every name is matched case-insensitively because distributions
   differ (the LDC discs are upper case, many copies are lower case);
2. read every .WRD and choose 7 speakers per word (`select_words`, rule below);
3. cut the chosen words out of the NIST SPHERE audio (decoded by libsndfile through
   `soundfile`: `cut_segments`) and fingerprint them (`content_fingerprint`).

The content fingerprint (not the path, not mtimes) is what identifies the corpus in a
run's config, so two copies of the same TIMIT give the same run id. The features and
their cache are `tasks.timit.features`'s.

Everything a user can get wrong raises `UserInputError` with one line saying what is
missing and how to fix it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path

import numpy as np

from tasks.errors import UserInputError

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
