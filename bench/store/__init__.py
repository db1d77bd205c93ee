"""Where runs are kept: the append-only, crash-safe results store (results), the claims that
stop two sweeps training one run (claims), what a valid record holds (records) and atomic
file writes (files). The bottom layer: imports nothing else from bench."""
