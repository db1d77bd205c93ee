"""Spoken-word classification on TIMIT (the paper's task 2), and its synthetic stand-in.

25 words in 5 groups that share a suffix (making / walking / ..., subway / leeway / ...):
the end of a word names only its group, so telling the words of a group apart needs the
beginning of the word remembered until its last frame, where the class is read out.
For every word 7 examples from 7 different speakers, 5 to train and 2 to test: 125 train
and 50 test sequences of 13 features per 10 ms frame (12 MFCCs + log energy), each channel
normalised with the training set's mean and standard deviation. Training inputs get
Gaussian noise (sigma 0.6, what both public reimplementations do; to check in the paper).

TIMIT is licensed by the LDC and never shipped: `TimitWords` reads it from ``timit_root``
or $TIMIT_ROOT.
`SynthWords` runs the same pipeline on a corpus it builds itself; it is "synthwords" in
every table, never TIMIT.

The paper trains with early stopping on the training error and has no validation set:
val and test loaders both give the 50 test sequences.

The folder: `corpus` (reading TIMIT: SPHERE audio, the layout, choosing the examples),
`features` (MFCCs and their cache), `synth` (the stand-in corpus in TIMIT's layout), `task`
(the two adapters; numpy only at import), `data` (the LightningDataModule, imported when a
run needs data).
"""

from tasks.timit.task import TRAIN_NOISE_STD, SynthWords, TimitWords, normalisation_stats

__all__ = ["TRAIN_NOISE_STD", "SynthWords", "TimitWords", "normalisation_stats"]
