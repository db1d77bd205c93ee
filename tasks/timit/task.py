"""The word tasks' adapters: `TimitWords` (TIMIT from ``timit_root``) and `SynthWords` (the
same pipeline on the stand-in corpus it builds): normalisation, parameters, the last-frame
readout, loss, metrics, baselines, the held-out variant for tuning.

Numpy only at import: the corpus is read on first use, and torch and the data module
(`tasks.timit.data`) are imported by the methods that need them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tasks.base import Task
from tasks.errors import UserInputError
from tasks.timit.corpus import GROUPS, SELECTION_RULE, TRAIN_PER_WORD, WORDS
from tasks.timit.features import FeatureConfig, WordFeatures, default_cache_dir, load_word_features
from tasks.timit.synth import ensure_synthetic_corpus

if TYPE_CHECKING:
    import torch

    from tasks.timit.data import WordsData, WordSequences

TRAIN_NOISE_STD = 0.6  # [to check] in the paper; both public reimplementations use it


def normalisation_stats(train_features: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over every frame of the training set."""
    frames = np.concatenate(train_features).astype(np.float64)
    std = frames.std(axis=0)
    return frames.mean(axis=0), np.where(std > 0, std, 1.0)  # a constant channel stays 0


@dataclasses.dataclass
class _Prepared:
    words: WordFeatures
    train: WordSequences
    val: WordSequences
    test: WordSequences
    mean: np.ndarray
    std: np.ndarray


class TimitWords(Task):
    """The paper's TIMIT task. Params: timit_root (or $TIMIT_ROOT; kept out of params(),
    which records the corpus content fingerprint instead), train_noise_std, cache_dir
    (default $CWBENCH_CACHE/timit or ~/.cache/cwbench/timit; not a param either: it does
    not change results) and the fields of FeatureConfig (n_mfcc, energy, preemphasis,
    win_ms, hop_ms, n_mels, window).

    The corpus is read lazily, on the first call that needs it (params, datamodule, ...),
    so constructing the task never touches the disk."""

    name = "timit"
    primary_metric = "error"
    higher_is_better = False
    input_size = 13
    output_size = len(WORDS)
    class_names = WORDS
    # error at least chance - 0.06 (0.90 for 25 words; about two standard errors of a
    # guesser on 50 test words): not learned
    learn_margin = 0.06

    def __init__(self, timit_root: str | Path | None = None,
                 train_noise_std: float = TRAIN_NOISE_STD,
                 cache_dir: str | Path | None = None, holdout: int = 0, **features):
        self.timit_root = timit_root
        self._configure(train_noise_std, cache_dir, features, holdout)

    # holdout: training examples per word held out as validation data (0: the test set is also
    # the validation data, which then only draws learning curves). A tuning variant
    # (`for_tuning`) never loads the test set: its held-out examples are all it is scored on.
    tuning = False

    def _configure(self, train_noise_std, cache_dir, features: dict, holdout: int = 0) -> None:
        if isinstance(holdout, bool) or not isinstance(holdout, int) or not 0 <= holdout < TRAIN_PER_WORD:
            raise UserInputError(f"{self.name} task: bad holdout {holdout!r}: give the training examples per word "
                                 f"held out as validation data, an integer from 0 to {TRAIN_PER_WORD - 1}")
        self.holdout = holdout
        if isinstance(train_noise_std, bool) or not isinstance(train_noise_std, (int, float)) \
                or not train_noise_std >= 0:
            raise UserInputError(
                f"{self.name} task: bad train_noise_std {train_noise_std!r}: give a number >= 0 "
                f"(default {TRAIN_NOISE_STD})"
            )
        self.train_noise_std = float(train_noise_std)
        self.features = FeatureConfig.from_params(features)
        self.input_size = self.features.n_features
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(self.name)
        self._prepared: _Prepared | None = None

    def _corpus_root(self):
        return self.timit_root  # resolve_root falls back to $TIMIT_ROOT and says what is missing

    # -- data ---------------------------------------------------------------------------

    def prepare(self) -> _Prepared:
        """Load (or extract and cache) the features and normalise them; done once."""
        if self._prepared is None:
            words = load_word_features(self._corpus_root(), self.features, self.cache_dir)
            splits = {"train": ([], []), "val": ([], []), "test": ([], [])}
            for choice, feats in zip(words.choices, words.features, strict=True):
                if choice.split == "test" and self.tuning:
                    continue  # tuning never sees the test set
                held_out = choice.split == "train" and choice.rank >= TRAIN_PER_WORD - self.holdout
                split = "val" if held_out else choice.split
                splits[split][0].append(feats)
                splits[split][1].append(choice.label)
            mean, std = normalisation_stats(splits["train"][0])  # training set only

            import torch

            from tasks.timit.data import WordSequences

            def normalised(split):
                feats, labels = splits[split]
                return WordSequences(
                    [torch.from_numpy(((f - mean) / std).astype(np.float32)) for f in feats],
                    labels)

            val = "val" if self.holdout else "test"
            test = "val" if self.tuning else "test"  # a tuning variant is scored on its held-out examples
            self._prepared = _Prepared(words, normalised("train"), normalised(val), normalised(test), mean, std)
        return self._prepared

    def __getstate__(self) -> dict:
        """Without the prepared data: a task sent to a worker process reads its features from the
        cache there. Pickled with its tensors, every job would hold shared-memory file handles in
        the driver, and a search's hundreds of task objects ran out of them."""
        return {**self.__dict__, "_prepared": None}

    @property
    def cache_hit(self) -> bool:
        """Whether the features came from the cache (False: extracted in this process)."""
        return self.prepare().words.cache_hit

    def selection(self) -> list[dict]:
        """The 175 chosen examples (word, label, split, rank, speaker, utterance, path,
        start, end), in data order within each split: write it beside the results."""
        return [dataclasses.asdict(c) for c in self.prepare().words.choices]

    def corpus_info(self) -> dict:
        """Where the data came from, for logs and result notes (not part of params)."""
        p = self.prepare()
        return {"fingerprint": p.words.fingerprint, "sample_rate": p.words.sample_rate,
                "cache_path": str(p.words.cache_path), "cache_hit": p.words.cache_hit,
                "n_train": len(p.train), "n_test": len(p.test),
                "norm_mean": p.mean.tolist(), "norm_std": p.std.tolist()}

    # -- the Task interface -------------------------------------------------------------

    def params(self) -> dict:
        held_out = {"holdout": self.holdout} if self.holdout else {}
        return {"corpus": self.prepare().words.fingerprint[:16],
                "train_noise_std": self.train_noise_std, **held_out, **dataclasses.asdict(self.features)}

    def sources(self) -> dict:
        """The corpus fingerprint and the 175 chosen word examples (ids and sample ranges
        only: nothing from which the licensed audio could be rebuilt)."""
        return {"corpus_fingerprint": self.prepare().words.fingerprint, "selection_rule": SELECTION_RULE,
                "selection": [f"{c['split']} {c['word']} {c['utterance']} {c['start']}-{c['end']}"
                              for c in self.selection()]}

    def datamodule(self, batch_size: int, seed: int, train_steps: int, by_epoch: bool = False) -> WordsData:
        from tasks.timit.data import WordsData

        p = self.prepare()
        return WordsData(p.train, p.val, p.test, batch_size, seed, train_steps, self.train_noise_std, by_epoch)

    def horizon(self) -> int:
        """The frames of the longest word of the training split (the corpus's own, not of the
        tuning variant's smaller one: a run and its tuning runs see the same T_max; never the
        test words'). Reads the features training reads anyway."""
        words = self.prepare().words
        return max(len(f) for c, f in zip(words.choices, words.features, strict=True) if c.split == "train")

    def epoch_batches(self, batch_size: int) -> int:
        from tasks.timit.data import epoch_batches

        return epoch_batches(len(self.prepare().train), batch_size)

    def validates_on_test(self) -> bool:
        return not self.holdout and not self.tuning

    def for_tuning(self) -> TimitWords:
        """The same task with one of the 5 training speakers of each word held out: tuning
        trains on the other 4 and is scored on those 25 sequences, never on the test set."""
        tuned = copy.copy(self)
        tuned.holdout, tuned.tuning, tuned._prepared = max(self.holdout, 1), True, None
        return tuned

    @staticmethod
    def last_step(y_hat: torch.Tensor, batch: dict) -> torch.Tensor:
        """The readout (B, O) at each sequence's last real frame."""
        import torch

        rows = torch.arange(len(y_hat), device=y_hat.device)
        return y_hat[rows, batch["lengths"].to(y_hat.device) - 1]

    def loss(self, y_hat: torch.Tensor, batch: dict, reduction: str = "mean") -> torch.Tensor:
        # one scored step per sequence: "mean" and "sum" over time are the same loss
        from torch.nn import functional as F

        return F.cross_entropy(self.last_step(y_hat, batch), batch["y"])

    def metrics(self, y_hat: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        from torch.nn import functional as F

        logits = self.last_step(y_hat, batch)
        error = (logits.argmax(-1) != batch["y"]).float().mean()
        return {"error": error, "ce": F.cross_entropy(logits, batch["y"])}

    def predictions(self, y_hat: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(true, predicted) class indices (B,), for a confusion matrix over class_names."""
        return batch["y"], self.last_step(y_hat, batch).argmax(-1)

    def artifacts(self, y_hat: torch.Tensor, batch: dict) -> dict[str, list]:
        true, pred = self.predictions(y_hat, batch)
        return {"true": true.tolist(), "pred": pred.tolist()}

    def baselines(self) -> dict[str, float]:
        n, per_group = len(WORDS), len(GROUPS[0])
        return {
            "error": 1 - 1 / n,  # chance
            "ce": math.log(n),
            # a model that hears only the shared suffix finds the group, then guesses
            "error_suffix_only": 1 - 1 / per_group,
        }


class SynthWords(TimitWords):
    """The same task on the synthetic stand-in corpus (`tasks.timit.synth`), which it
    builds into its cache dir on first use. Params: corpus_seed, n_speakers (>= 7),
    train_noise_std, the feature settings, cache_dir (default $CWBENCH_CACHE/synthwords
    or ~/.cache/cwbench/synthwords)."""

    name = "synthwords"

    def __init__(self, corpus_seed: int = 0, n_speakers: int = 8,
                 train_noise_std: float = TRAIN_NOISE_STD,
                 cache_dir: str | Path | None = None, holdout: int = 0, **features):
        for key, value, low in (("corpus_seed", corpus_seed, 0), ("n_speakers", n_speakers, 7)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserInputError(
                    f"synthwords task: bad {key} {value!r}: give an integer >= {low}")
        self.corpus_seed, self.n_speakers = corpus_seed, n_speakers
        self.timit_root = None
        self._configure(train_noise_std, cache_dir, features, holdout)

    def _corpus_root(self):
        return ensure_synthetic_corpus(self.cache_dir, self.corpus_seed, self.n_speakers)

    def params(self) -> dict:
        return {"corpus_seed": self.corpus_seed, "n_speakers": self.n_speakers, **super().params()}
