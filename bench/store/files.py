"""Writing generated files so that a reader never sees half of one.

Every file the suite writes (the results store, leaderboards, plots) goes through a
temporary file in the same folder and an atomic rename: a process killed at any moment
leaves the old file or the new one. The new file keeps the old one's permission bits
(a fresh temporary file would be private, 0600), and a new file gets the usual ones
(0666 less the umask).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temporary_prefix(path: Path) -> str:
    return f".{Path(path).name}."


def atomic_write(path: Path, data: bytes | str) -> None:
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else _default_mode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_figure(figure, path: Path, **savefig_args) -> Path:
    """A matplotlib figure as a PNG, written atomically."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig_args)
    atomic_write(path, buffer.getvalue())
    return Path(path)


def remove_leftovers(path: Path) -> list[Path]:
    """Temporary files of `path` left by a process killed mid-write (call it where no
    other writer of `path` can be mid-write: under the store's lock)."""
    path = Path(path)
    stale = list(path.parent.glob(temporary_prefix(path) + "*" + TMP_SUFFIX))
    for leftover in stale:
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    return stale
