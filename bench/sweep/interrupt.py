"""Stopping a sweep with Ctrl-C or SIGTERM: a clean stop, a message, and the shell's status
(130 for SIGINT, 143 for SIGTERM). A cluster lost mid-sweep stops it the same way, with
status 1 (bench/sweep/launchers/ray.py: ClusterLost). Light on imports: the CLI installs it first."""

from __future__ import annotations

import contextlib
import signal


class Interrupted(BaseException):
    """SIGINT or SIGTERM during a sweep. A BaseException, so that no `except Exception`
    records the run it stopped as failed; not a KeyboardInterrupt, which Lightning turns
    into sys.exit(1) before anyone can say what was stored."""

    def __init__(self, signum: int | None, stored: int = 0, cause: str = ""):
        super().__init__(signum)
        self.signum, self.stored, self.cause = signum, stored, cause

    def says(self) -> str:
        """What stopped the sweep: the signal's name, or the cause in words."""
        import signal as signals

        return self.cause or signals.Signals(self.signum).name

    def status(self) -> int:
        """The exit status: the shell's for a signal (128 + its number), else 1."""
        return 128 + self.signum if self.signum else 1


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT and SIGTERM raise Interrupted in the main thread, wherever it is."""

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
