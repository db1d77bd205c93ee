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

The folder: `targets` (the built-in notes, reading audio files, the scaled window), `task`
(the adapter, NMSE and the waveform plot; numpy only at import), `data` (the
LightningDataModule, imported when a run needs data).
"""

from tasks.audio.targets import (
    DEFAULT_TARGETS,
    LENGTH,
    SAMPLE_RATE,
    SYNTH_PREFIX,
    TUNING_TARGETS,
    cut_and_scale,
    load_target,
    read_audio,
    synth_bell,
    synth_bowed,
    synth_chord,
    synth_flute,
    synth_marimba,
    synth_pluck,
    synth_reed,
    synthesise,
    write_default_targets,
)
from tasks.audio.task import AudioGeneration, nmse, plot_waveforms

__all__ = ["DEFAULT_TARGETS", "LENGTH", "SAMPLE_RATE", "SYNTH_PREFIX", "TUNING_TARGETS", "AudioGeneration",
           "cut_and_scale", "load_target", "nmse", "plot_waveforms", "read_audio", "synth_bell", "synth_bowed",
           "synth_chord", "synth_flute", "synth_marimba", "synth_pluck", "synth_reed", "synthesise",
           "write_default_targets"]
