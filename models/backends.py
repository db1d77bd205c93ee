"""Which CW-RNN backend `auto` runs for a given device and shape."""


def pick_backend(module, x) -> str:
    return "reference"
