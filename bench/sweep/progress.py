"""What a sweep says while it runs and when it ends, whatever launcher runs it: a line per
finished run with runs done / to do, failures so far and the time left, a live bar on a
terminal (tqdm, which Lightning already installs), and a summary at the end."""

from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class SweepProgress:
    """Counts runs by status as their records arrive (in any order) and says so."""

    def __init__(self, total: int, log=print, bar: bool | None = None):
        self.total, self.log = total, log
        self.counts = {"ok": 0, "diverged": 0, "failed": 0}
        self.failures: list[tuple[str, str]] = []
        self.started = time.monotonic()
        if bar is None:  # a live bar only where someone watches; logs get the lines alone
            bar = log is print and sys.stderr.isatty() and total > 0
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", dynamic_ncols=True, leave=False, file=sys.stderr)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def eta(self) -> str:
        if not self.done or self.done == self.total:
            return ""
        left = (time.monotonic() - self.started) / self.done * (self.total - self.done)
        return f"ETA {duration(left)}"

    def finished(self, description: str, record: dict) -> None:
        status = record["status"]
        self.counts[status] += 1
        if status == "failed":
            self.failures.append((description, record["reason"]))
        metric = record["metrics"].get(record["primary_metric"])
        shown = f" {record['primary_metric']}={metric:.4g}" if metric is not None else ""
        if record.get("learned") is False and status == "ok":
            shown += " (not learned)"
        if record["reason"]:
            shown += f" ({record['reason']})"
        notes = [self.eta(), f"{self.counts['failed']} failed so far" if self.counts["failed"] else ""]
        notes = ", ".join(note for note in notes if note)
        line = (f"[{self.done}/{self.total}] {description} {status}{shown} [{record['wall_time_s']:.1f}s]"
                + (f" | {notes}" if notes else ""))
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
            self.bar.set_postfix_str(f"{self.counts['failed']} failed" if self.counts["failed"] else "")
            self.bar.update(1)
        else:
            self.log(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self, skipped: int, elsewhere: int = 0) -> str:
        """One line of counts and time, then the failed runs with their reasons."""
        self.close()
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        lines = [f"sweep: {self.done} of {self.total} runs trained ({counts}) in "
                 f"{duration(time.monotonic() - self.started)}; {skipped} already in the store"
                 + (f"; {elsewhere} left to another sweep on this store" if elsewhere else "")]
        for description, reason in self.failures[:10]:
            lines.append(f"  failed: {description}: {reason}")
        if len(self.failures) > 10:
            lines.append(f"  ... and {len(self.failures) - 10} more failed runs (status 'failed' in the store)")
        if self.failures:
            lines.append("  failed runs are retried by the next invocation of the same command")
        return "\n".join(lines)
