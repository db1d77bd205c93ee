"""TIMIT word task: SPHERE reading, layout, selection, features, cache, errors, end to end.

Everything runs on the synthetic stand-in corpus (tasks.timit.synth), built once per
module in a temporary folder; TIMIT itself is never needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tasks.errors import UserInputError
from tasks.timit import SynthWords, TimitWords, normalisation_stats
from tasks.timit.corpus import (
    ROOT_NOT_SET,
    WORDS,
    content_fingerprint,
    cut_segments,
    read_audio,
    read_wrd,
    resolve_root,
    scan_corpus,
    select_words,
    sphere_fields,
)
from tasks.timit.features import FeatureConfig, load_word_features, mfcc_features
from tasks.timit.synth import write_synthetic_corpus


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    # never read a real TIMIT or write to the user's cache from a test
    monkeypatch.delenv("TIMIT_ROOT", raising=False)
    monkeypatch.setenv("CWBENCH_CACHE", str(tmp_path / "cwbench-cache"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """8 speakers, TRAIN tree upper case, test tree lower case; do not modify it."""
    return write_synthetic_corpus(tmp_path_factory.mktemp("timit") / "corpus", seed=0, n_speakers=8)


@pytest.fixture(scope="module")
def task(corpus, tmp_path_factory) -> TimitWords:
    task = TimitWords(timit_root=corpus, cache_dir=tmp_path_factory.mktemp("cache"))
    task.prepare()
    return task


@pytest.fixture
def corpus_copy(corpus, tmp_path) -> Path:
    return Path(shutil.copytree(corpus, tmp_path / "corpus"))


def corpus_files(root: Path, ext: str) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.upper() == ext)


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# -- SPHERE ---------------------------------------------------------------------------

FULL_RANGE = np.random.default_rng(0).integers(-32768, 32768, 5000).astype(np.int16)


def write_nist(path: Path, samples=FULL_RANGE, endian="LITTLE") -> Path:
    sf.write(path, samples, 16000, format="NIST", subtype="PCM_16", endian=endian)
    return path


def timit_header(sample_count: int, byte_format: bytes = b"01", coding: bytes = b"") -> bytes:
    # the header of a real TIMIT file (which has no sample_coding field: PCM is the default)
    return (b"NIST_1A\n   1024\ndatabase_id -s5 TIMIT\ndatabase_version -s3 1.0\n"
            b"utterance_id -s8 aks0_sa1\nchannel_count -i 1\nsample_count -i %d\n"
            b"sample_rate -i 16000\nsample_min -i -2191\nsample_max -i 2790\n"
            b"sample_n_bytes -i 2\nsample_byte_format -s2 %s\nsample_sig_bits -i 16\n%s"
            b"end_head\n" % (sample_count, byte_format, coding)).ljust(1024, b" ")


@pytest.mark.parametrize("endian, byte_format", [("LITTLE", "01"), ("BIG", "10")])
def test_sphere_round_trip(tmp_path, endian, byte_format):
    path = write_nist(tmp_path / "x.wav", endian=endian)
    raw = path.read_bytes()
    assert raw.startswith(b"NIST_1A\n   1024\n") and len(raw) == 1024 + 2 * len(FULL_RANGE)
    fields = sphere_fields(raw[:1024])
    assert (fields["sample_rate"], fields["sample_count"]) == ("16000", "5000")
    assert fields["sample_byte_format"] == byte_format and fields["sample_coding"] == "pcm"
    audio, rate = read_audio(path)
    assert rate == 16000 and audio.dtype == np.float64
    np.testing.assert_array_equal(audio, FULL_RANGE / 32768.0)


@pytest.mark.parametrize("byte_format, dtype", [(b"01", "<i2"), (b"10", ">i2")])
def test_sphere_timit_header_bit_for_bit(tmp_path, byte_format, dtype):
    # laid out by hand as on the LDC disc, not by libsndfile: its decoding is checked, not
    # a round trip; bytes after the promised samples are not audio
    path = tmp_path / "SA1.WAV"
    path.write_bytes(timit_header(len(FULL_RANGE), byte_format)
                     + FULL_RANGE.astype(dtype).tobytes() + b"\x12\x34" * 7)
    assert sphere_fields(path.read_bytes()[:1024])["utterance_id"] == "aks0_sa1"
    audio, rate = read_audio(path)
    assert rate == 16000
    assert audio.tobytes() == (FULL_RANGE.astype(np.float64) / 32768.0).tobytes()


def test_sphere_shorten_is_refused_with_the_fix(tmp_path):
    # TIMIT as some discs ship it; libsndfile alone says only "unimplemented format"
    path = write_nist(tmp_path / "SX1.WAV")
    raw = path.read_bytes()
    header = raw[:1024].replace(b"sample_coding -s3 pcm\n", b"sample_coding -s26 pcm,embedded-shorten-v2.00\n")
    assert header[1024:].strip(b"\0") == b""  # only padding pushed out
    path.write_bytes(header[:1024] + raw[1024:])
    with pytest.raises(UserInputError) as err:
        read_audio(path)
    message = one_line_error(err)
    assert str(path) in message and "'pcm,embedded-shorten-v2.00'" in message
    assert "libsndfile cannot read" in message and "sph2pipe" in message


def test_sphere_truncated_says_what_was_promised_and_what_is_there(tmp_path):
    path = write_nist(tmp_path / "SX2.WAV")
    path.write_bytes(path.read_bytes()[: 1024 + 1000])
    with pytest.raises(UserInputError) as err:
        read_audio(path)
    message = one_line_error(err)
    assert str(path) in message and "truncated" in message and "intact TIMIT copy" in message
    assert "promises 5000 samples (10000 data bytes) but the file holds 1000 data bytes" in message


@pytest.mark.parametrize("content, problem", [
    (b"this is not audio at all" * 10, "is neither NIST SPHERE nor other audio (it starts with b'this is'): "
                                       "libsndfile says 'Format not recognised.'"),
    (b"NIST_1A\n   1024\nsample_rate\n", "is not readable NIST SPHERE: libsndfile says"),
    (b"", "is neither NIST SPHERE nor other audio"),
])
def test_not_sphere_or_unreadable(tmp_path, content, problem):
    path = tmp_path / "SX3.WAV"
    path.write_bytes(content)
    with pytest.raises(UserInputError) as err:
        read_audio(path)
    message = one_line_error(err)
    assert message.startswith(f"audio file {path} {problem}")
    assert message.endswith("replace it with the file from an intact TIMIT copy")


def test_riff_wav_is_read_too(tmp_path):
    import soundfile

    samples = (np.sin(np.arange(800) / 5) * 10000).astype(np.int16)
    soundfile.write(tmp_path / "SX1.WAV", samples, 16000, format="WAV", subtype="PCM_16")
    audio, rate = read_audio(tmp_path / "SX1.WAV")
    assert rate == 16000
    np.testing.assert_array_equal(audio, samples / 32768.0)


# -- layout and selection ---------------------------------------------------------------


def test_both_name_cases_give_the_same_data(corpus, tmp_path):
    names = {p.name for p in corpus.rglob("*")}
    assert {"TRAIN", "test"} <= names  # the fixture mixes cases

    def chosen(root):
        base = resolve_root(root)
        choices = select_words(scan_corpus(base), base)
        return choices, content_fingerprint(choices, *cut_segments(choices, base))

    mixed, fp_mixed = chosen(corpus)
    assert any(c.path.isupper() for c in mixed) and any(c.path.islower() for c in mixed)
    for case in ("upper", "lower"):
        other, fp_other = chosen(write_synthetic_corpus(tmp_path / case, seed=0, n_speakers=8, case=case))
        assert [c.utterance for c in other] == [c.utterance for c in mixed]  # canonical ids
        assert fp_other == fp_mixed  # the fingerprint ignores name case and location


def test_root_may_be_the_folder_above(corpus, tmp_path):
    outer = tmp_path / "timit"
    outer.mkdir()
    (outer / "TIMIT").symlink_to(corpus, target_is_directory=True)
    assert resolve_root(outer) == outer / "TIMIT"


def test_selection_counts_and_determinism(corpus):
    base = resolve_root(corpus)
    utterances = scan_corpus(base)
    choices = select_words(utterances, base)
    assert choices == select_words(list(reversed(utterances)), base)  # order of discovery is irrelevant
    assert len(choices) == 175
    assert sum(c.split == "train" for c in choices) == 125
    assert sum(c.split == "test" for c in choices) == 50
    for label, word in enumerate(WORDS):
        mine = [c for c in choices if c.word == word]
        assert all(c.label == label for c in mine)
        assert len({c.speaker for c in mine}) == 7
        assert [c.split for c in mine] == ["train"] * 5 + ["test"] * 2
        # the documented rule: speakers ranked by sha256("<word>/<SPEAKER>")
        ranks = [hashlib.sha256(f"{word}/{c.speaker}".encode()).hexdigest() for c in mine]
        assert ranks == sorted(ranks)
    # the record points at the exact samples: the .WRD line is there
    for c in choices[:10]:
        wrd = (base / c.path).with_suffix(".WRD" if c.path.endswith(".WAV") else ".wrd")
        assert (c.start, c.end, c.word) in read_wrd(wrd)


def test_selection_takes_each_speakers_first_occurrence(corpus):
    base = resolve_root(corpus)
    utterances = scan_corpus(base)
    occurrences = {}  # (word, speaker) -> all (uid, start)
    for u in utterances:
        for start, _, word in read_wrd(u.wrd):
            occurrences.setdefault((word, u.speaker), []).append((u.uid, start))
    assert any(len(v) > 1 for k, v in occurrences.items() if k[0] in WORDS)  # repeats exist
    for c in select_words(utterances, base):
        assert (c.utterance, c.start) == min(occurrences[(c.word, c.speaker)])


# -- features -----------------------------------------------------------------------------


def test_mfcc_shapes_and_energy():
    signal = np.random.default_rng(1).normal(0, 0.1, 8000)  # 0.5 s at 16 kHz
    feats = mfcc_features(signal, 16000, FeatureConfig())
    assert feats.shape == (1 + (8000 - 400) // 160, 13) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    # column 0 is the log energy of the pre-emphasised frame (before windowing)
    emphasised = np.concatenate([[signal[0]], signal[1:] - 0.97 * signal[:-1]])
    np.testing.assert_allclose(feats[0, 0], np.log(np.sum(emphasised[:400] ** 2)), rtol=1e-5)
    c0 = mfcc_features(signal, 16000, FeatureConfig(energy="c0"))
    np.testing.assert_array_equal(c0[:, 1:], feats[:, 1:])
    assert not np.allclose(c0[:, 0], feats[:, 0])
    assert mfcc_features(signal[:300], 16000, FeatureConfig()).shape == (1, 13)  # padded to a frame
    assert mfcc_features(signal, 16000, FeatureConfig(n_mfcc=5, hop_ms=20)).shape == (1 + 7600 // 320, 6)


def test_feature_settings_are_checked():
    with pytest.raises(UserInputError, match="unknown timit feature setting"):
        TimitWords(n_mfccs=12)
    with pytest.raises(UserInputError, match="energy"):
        FeatureConfig(energy="loudness")
    with pytest.raises(UserInputError, match="train_noise_std"):
        TimitWords(train_noise_std=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        FeatureConfig().n_mfcc = 3


def test_task_data_shapes_and_train_only_normalisation(task):
    p = task.prepare()
    assert (len(p.train), len(p.test)) == (125, 50)
    raw = task.prepare().words
    raw_train = [f for c, f in zip(raw.choices, raw.features, strict=True) if c.split == "train"]
    mean, std = normalisation_stats(raw_train)
    np.testing.assert_allclose(p.mean, mean)
    frames = torch.cat(p.train.sequences).double()
    assert frames.shape[1] == 13 and len(frames) == sum(len(f) for f in raw_train)
    np.testing.assert_allclose(frames.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(frames.std(0, unbiased=False), 1, atol=1e-5)
    # test data: the training statistics applied, not its own
    raw_test = [f for c, f in zip(raw.choices, raw.features, strict=True) if c.split == "test"]
    np.testing.assert_allclose(p.test.sequences[0].numpy(), (raw_test[0] - mean) / std, rtol=1e-5, atol=1e-5)
    assert not np.allclose(torch.cat(p.test.sequences).double().mean(0), 0, atol=1e-3)


# -- cache --------------------------------------------------------------------------------


def edit_in_place(path: Path, offset: int, new: bytes) -> None:
    """Overwrite bytes of a file keeping its size and its mtime (and atime)."""
    before = path.stat()
    raw = bytearray(path.read_bytes())
    assert raw[offset : offset + len(new)] != new
    raw[offset : offset + len(new)] = new
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_cache_hit_then_miss_on_changes(corpus_copy, tmp_path):
    cache = tmp_path / "cache"
    first = load_word_features(corpus_copy, FeatureConfig(), cache)
    second = load_word_features(corpus_copy, FeatureConfig(), cache)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.choices == first.choices and second.fingerprint == first.fingerprint
    for a, b in zip(first.features, second.features, strict=True):
        np.testing.assert_array_equal(a, b)
    # a changed setting rebuilds, and both entries stay
    changed = load_word_features(corpus_copy, FeatureConfig(preemphasis=0.9), cache)
    assert not changed.cache_hit and changed.cache_path != first.cache_path
    assert load_word_features(corpus_copy, FeatureConfig(preemphasis=0.9), cache).cache_hit
    # the key is the content of what the features come from: an in-place edit of an audio
    # file that keeps its size and mtime is a miss when the file is used...
    used = {c.path for c in first.choices}
    unused = next(p for p in corpus_files(corpus_copy, ".WAV") if p.relative_to(corpus_copy).as_posix() not in used)
    edit_in_place(unused, 1024 + 100, b"\x10\x20\x30\x40")
    assert load_word_features(corpus_copy, FeatureConfig(), cache).cache_hit  # ...not when it is not
    chosen = first.choices[0]
    edit_in_place(corpus_copy / chosen.path, 1024 + 2 * chosen.start + 100, b"\x10\x20\x30\x40")
    rebuilt = load_word_features(corpus_copy, FeatureConfig(), cache)
    assert not rebuilt.cache_hit and rebuilt.fingerprint != first.fingerprint
    assert rebuilt.cache_path != first.cache_path
    assert not np.array_equal(rebuilt.features[0], first.features[0])
    same_file = [i for i, c in enumerate(first.choices) if c.path == chosen.path]
    other = next(i for i in range(len(first.choices)) if i not in same_file)
    np.testing.assert_array_equal(rebuilt.features[other], first.features[other])
    # a .WRD edit that moves a chosen word (same size, same mtime) is a miss too
    wrd = (corpus_copy / chosen.path).with_suffix(".WRD" if chosen.path.endswith(".WAV") else ".wrd")
    line = f"{chosen.start} {chosen.end} {chosen.word}"
    moved = f"{chosen.start} {chosen.end - 10} {chosen.word}"
    assert len(moved) == len(line)  # the synthetic words are far longer than 10 samples
    text = wrd.read_bytes()
    edit_in_place(wrd, text.index(line.encode()), moved.encode())
    shifted = load_word_features(corpus_copy, FeatureConfig(), cache)
    assert not shifted.cache_hit and shifted.choices[0].end == chosen.end - 10
    # the task says which it was
    assert not TimitWords(timit_root=corpus_copy, cache_dir=tmp_path / "other").cache_hit
    assert TimitWords(timit_root=corpus_copy, cache_dir=tmp_path / "other").cache_hit


def _flip_features(entry: Path, words) -> Path:
    # one float of the stored features: read as it is, this is a silently wrong number
    arrow = next((entry / "data").glob("*.arrow"))
    raw = arrow.read_bytes()
    at = raw.index(words.features[5].tobytes()) + 4 * 7
    arrow.write_bytes(raw[:at] + bytes(b ^ 0x40 for b in raw[at : at + 4]) + raw[at + 4 :])
    return arrow


def _flip_fingerprint(entry: Path, words) -> Path:
    info = entry / "cwbench_cache.json"
    info.write_text(info.read_text().replace(words.fingerprint, words.fingerprint[::-1]))
    return info


def _flip_checksum(entry: Path, words) -> Path:
    # the listing itself damaged: the file whose digest changed no longer matches it
    path = entry / "cwbench_sha256.json"
    sums = json.loads(path.read_text())
    name = sorted(sums)[0]
    sums[name] = sums[name][::-1]
    path.write_text(json.dumps(sums))
    return entry / name


def _drop_checksums(entry: Path, words) -> Path:
    (entry / "cwbench_sha256.json").unlink()
    return entry / "cwbench_sha256.json"


@pytest.mark.parametrize("damage", [_flip_features, _flip_fingerprint, _flip_checksum, _drop_checksums])
def test_damaged_cache_entry_is_detected_and_rebuilt(corpus, tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    first = load_word_features(corpus, FeatureConfig(), cache)
    damaged = damage(first.cache_path, first)
    with caplog.at_level("WARNING", logger="tasks.timit.features"):
        again = load_word_features(corpus, FeatureConfig(), cache)
    assert not again.cache_hit and again.cache_path == first.cache_path
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert f"cache entry {first.cache_path} is damaged" in warnings[0] and "rebuilding" in warnings[0]
    assert damaged.name in warnings[0]
    assert again.fingerprint == first.fingerprint
    for a, b in zip(first.features, again.features, strict=True):
        np.testing.assert_array_equal(a, b)
    # the rebuilt entry is whole again
    assert load_word_features(corpus, FeatureConfig(), cache).cache_hit


def test_default_cache_dir_and_env_root(corpus, monkeypatch, tmp_path):
    monkeypatch.setenv("TIMIT_ROOT", str(corpus))
    monkeypatch.setenv("CWBENCH_CACHE", str(tmp_path / "c"))
    t = TimitWords()
    assert t.cache_dir == tmp_path / "c" / "timit"
    assert not t.cache_hit and t.prepare().words.cache_path.parent == tmp_path / "c" / "timit"


# -- errors -------------------------------------------------------------------------------


def test_error_root_not_set():
    with pytest.raises(UserInputError) as err:
        TimitWords().params()
    assert one_line_error(err) == ROOT_NOT_SET
    assert "--timit-root" in ROOT_NOT_SET and "TIMIT_ROOT" in ROOT_NOT_SET and "LDC" in ROOT_NOT_SET


def test_error_root_missing_or_not_timit(tmp_path):
    with pytest.raises(UserInputError, match="does not exist") as err:
        TimitWords(timit_root=tmp_path / "nowhere").params()
    one_line_error(err)
    (tmp_path / "junk" / "TRAIN").mkdir(parents=True)  # TRAIN but no DR* inside
    with pytest.raises(UserInputError, match="not a TIMIT layout") as err:
        TimitWords(timit_root=tmp_path / "junk").params()
    one_line_error(err)


def test_error_missing_words(tmp_path):
    words = [w for w in WORDS if w not in ("leeway", "critical")]
    root = write_synthetic_corpus(tmp_path / "c", seed=0, n_speakers=7, words=words)
    with pytest.raises(UserInputError) as err:
        TimitWords(timit_root=root, cache_dir=tmp_path / "cache").params()
    message = one_line_error(err)
    assert "critical, leeway" in message and "lacks 2 of the 25 words" in message


def test_error_too_few_speakers(corpus_copy):
    # take "subway" away from 2 of the 8 speakers: 6 left
    speakers = set()
    for wrd in corpus_files(corpus_copy, ".WRD"):
        lines = wrd.read_text().splitlines(keepends=True)
        if any(line.split()[2] == "subway" for line in lines) and len(speakers) < 2:
            speakers.add(wrd.parent.name)
        if wrd.parent.name in speakers:
            wrd.write_text("".join(line for line in lines if line.split()[2] != "subway"))
    with pytest.raises(UserInputError) as err:
        TimitWords(timit_root=corpus_copy, cache_dir=corpus_copy.parent / "cache").params()
    message = one_line_error(err)
    assert "fewer than 7 speakers for 1 word(s): subway (6 speakers)" in message


def _shorten(raw: bytes) -> bytes:
    header = raw[:1024].replace(b"sample_coding -s3 pcm\n", b"sample_coding -s7 shorten\n")
    return header[:1024] + raw[1024:]


@pytest.mark.parametrize("damage, problem", [
    (lambda raw: b"this is not audio at all" * 10, "is neither NIST SPHERE nor other audio"),
    (lambda raw: raw[:2000], "but the file holds 976 data bytes"),
    (_shorten, "is compressed NIST SPHERE (sample_coding 'shorten')"),
])
def test_error_unreadable_audio(corpus_copy, tmp_path, damage, problem):
    base = resolve_root(corpus_copy)
    victim = base / select_words(scan_corpus(base), base)[3].path
    victim.write_bytes(damage(victim.read_bytes()))
    with pytest.raises(UserInputError) as err:
        TimitWords(timit_root=corpus_copy, cache_dir=tmp_path / "cache").params()
    message = one_line_error(err)
    assert str(victim) in message and problem in message
    victim.unlink()  # a .WRD without its .WAV
    with pytest.raises(UserInputError, match="no .WAV") as err:
        TimitWords(timit_root=corpus_copy, cache_dir=tmp_path / "cache").params()
    one_line_error(err)


# -- the task end to end ------------------------------------------------------------------


def test_params_record_a_fingerprint_not_the_root(task, corpus):
    params = task.params()
    assert "timit_root" not in params and "cache_dir" not in params
    assert str(corpus) not in str(params)
    assert params["corpus"] == task.prepare().words.fingerprint[:16]
    assert params["train_noise_std"] == 0.6 and params["n_mfcc"] == 12
    assert (task.name, task.primary_metric, task.higher_is_better) == ("timit", "error", False)
    assert (task.input_size, task.output_size) == (13, 25)
    assert len(task.selection()) == 175 and task.selection()[0]["word"] == "making"


def test_train_batches_cycle_deterministically_with_noise(task):
    data = task.datamodule(batch_size=16, seed=3, train_steps=20)
    batches = list(data.train_dataloader())
    assert len(batches) == 20
    b = batches[0]
    assert b["x"].dtype == torch.float32 and b["x"].shape[0] == 16 and b["x"].shape[2] == 13
    assert b["x"].shape[1] == int(b["lengths"].max()) and b["y"].dtype == torch.int64
    # 20 x 16 = 320 draws: every training sequence seen twice in the first 250
    seen = torch.cat([x["index"] for x in batches])
    assert sorted(seen[:125].tolist()) == list(range(125)) == sorted(seen[125:250].tolist())
    again = list(task.datamodule(batch_size=16, seed=3, train_steps=20).train_dataloader())
    assert all(torch.equal(a["x"], c["x"]) for a, c in zip(batches, again, strict=True))
    other = next(iter(task.datamodule(batch_size=16, seed=4, train_steps=20).train_dataloader()))
    assert not torch.equal(other["index"], b["index"])
    # noise on real frames only, sigma 0.6; padding stays zero
    clean = task.prepare().train.sequences
    row = int(torch.argmin(b["lengths"]))
    n = int(b["lengths"][row])
    assert (b["x"][row, n:] == 0).all()
    residual = b["x"][row, :n] - clean[int(b["index"][row])]
    assert 0.4 < residual.std().item() < 0.8


def test_end_to_end_tiny_gru(task):
    torch.manual_seed(0)
    data = task.datamodule(batch_size=25, seed=0, train_steps=8)
    rnn = torch.nn.GRU(task.input_size, 16, batch_first=True)
    readout = torch.nn.Linear(16, task.output_size)
    optimiser = torch.optim.Adam([*rnn.parameters(), *readout.parameters()], lr=1e-2)
    for batch in data.train_dataloader():
        y_hat = readout(rnn(batch["x"])[0])
        assert y_hat.shape == (25, batch["x"].shape[1], 25)
        loss = task.loss(y_hat, batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        assert math.isfinite(loss.item())
    pairs, total = [], 0
    for batch in data.val_dataloader():
        with torch.no_grad():
            y_hat = readout(rnn(batch["x"])[0])
        metrics = task.metrics(y_hat, batch)
        assert set(metrics) == {"error", "ce"} and all(v.ndim == 0 and torch.isfinite(v) for v in metrics.values())
        assert 0 <= metrics["error"] <= 1
        true, pred = task.predictions(y_hat, batch)
        assert true.shape == pred.shape == (len(batch["y"]),)
        art = task.artifacts(y_hat, batch)
        pairs += list(zip(art["true"], art["pred"], strict=True))
        total += len(batch["y"])
    assert total == 50 and len(pairs) == 50
    assert sorted(t for t, _ in pairs) == sorted(list(range(25)) * 2)
    # the readout used is the one at the last real frame, not at the padding
    batch = next(iter(data.val_dataloader()))
    y_hat = torch.randn(len(batch["y"]), batch["x"].shape[1], 25)
    last = y_hat[torch.arange(len(y_hat)), batch["lengths"] - 1]
    assert torch.equal(task.last_step(y_hat, batch), last)
    assert task.baselines()["error"] == pytest.approx(0.96)


def test_synthwords_builds_its_own_corpus(tmp_path):
    synth = SynthWords(cache_dir=tmp_path / "synth", n_speakers=7)
    assert synth.name == "synthwords" and "timit" not in synth.name.lower()
    params = synth.params()
    assert params["corpus_seed"] == 0 and params["n_speakers"] == 7 and "timit_root" not in params
    assert len(synth.prepare().train) == 125 and not synth.cache_hit
    again = SynthWords(cache_dir=tmp_path / "synth", n_speakers=7)
    assert again.cache_hit and again.params() == params
    with pytest.raises(UserInputError, match="n_speakers"):
        SynthWords(n_speakers=6)


def test_known_windows_are_scipy_windows():
    # FeatureConfig accepts these names without importing scipy: each must be one scipy takes
    import scipy.signal

    from tasks.timit.features import KNOWN_WINDOWS

    for name in KNOWN_WINDOWS:
        assert len(scipy.signal.get_window(name, 8)) == 8


def test_a_pickled_task_leaves_its_prepared_data_behind(tmp_path):
    """Jobs carry their task to worker processes: its tensors must not travel (each would hold a
    shared-memory file handle in the driver; a search sends hundreds of tasks)."""
    import pickle

    from tasks.timit.task import SynthWords

    task = SynthWords(cache_dir=str(tmp_path / "c"), n_mfcc=4)
    params = task.params()  # prepares the data
    assert task._prepared is not None
    copy = pickle.loads(pickle.dumps(task))
    assert copy._prepared is None and task._prepared is not None
    assert copy.params() == params and len(copy.prepare().train) == len(task.prepare().train)
