"""`cwbench speed`'s options, read by the command line and by `python -m bench.speed`
without importing torch (so that --help answers at once)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.arguments import positive_int

SPEED_DESCRIPTION = ("How fast each CW-RNN backend is next to the library RNN, LSTM and GRU kernels: "
                     "writes <out>/speed_<device>.md, .csv and .png (see bench/speed.py).")


def speed_arguments(p: argparse.ArgumentParser) -> None:
    """`cwbench speed`'s options; here, not in bench/speed.py, so that --help needs no torch."""
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: the CPU, and the GPU too when there is one")
    p.add_argument("--quick", action="store_true", help="a tiny grid (seconds): checks the script, not speed")
    p.add_argument("--out", type=Path, default=Path("results/speed"), help="output folder (default results/speed)")
    p.add_argument("--repeats", type=int, default=5, help="minimum timed rounds per shape (default 5)")
    p.add_argument("--min-time", type=float, default=3.0, help="cheap shapes repeat rounds for this many seconds")
    p.add_argument("--shapes", nargs="+", help="only these shapes or families (e.g. audio b64)")
    p.add_argument("--full", action="store_true", help="on CPU too, the full B=256 T=1024 shape (slow)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--interference", action="store_true", help="instead: an LSTM run's time in a fresh process "
                   "and after CW-RNN runs in the same process, on 1 and 2 threads (bench/interference.py)")
    p.add_argument("--store", action="store_true", help="the results store instead: append, finished ids and index "
                   "rebuild by store size, beside the old full rewrite (bench/store_speed.py)")
    p.add_argument("--sizes", nargs="+", type=positive_int, metavar="N",
                   help="with --store: store sizes in records (default 1000 10000 100000; --quick: 100 1000)")
