"""A progress bar for training: one redrawn line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``Progress(total, desc)``; ``advance(n, **metrics)`` per step, ``close(**metrics)`` at the end.

    On a terminal the line is redrawn in place (``\\r``); otherwise (CI logs, pipes) a line is
    printed at most every ``every`` seconds and at the end, so logs stay short.
    """

    def __init__(
        self, total: int, desc: str, *, stream: TextIO | None = None, enabled: bool = True,
        every: float = 10.0,
    ) -> None:  # fmt: skip
        self.total, self.desc, self.enabled, self.every = total, desc, enabled, every
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done, self.start, self.last_print = 0, time.perf_counter(), 0.0

    def _line(self, metrics: dict) -> str:
        elapsed = time.perf_counter() - self.start
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()]
        return (
            f"{self.desc} [{bar}] {self.done}/{self.total} {rate:.1f} it/s {elapsed:.0f}s "
            + " ".join(parts)
        )

    def advance(self, n: int = 1, **metrics) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r" + self._line(metrics)[:200])
            self.stream.flush()
        elif now - self.last_print >= self.every:
            self.stream.write(self._line(metrics) + "\n")
            self.last_print = now

    def close(self, **metrics) -> None:
        if self.enabled:
            self.stream.write(("\r" if self.tty else "") + self._line(metrics) + "\n")
            self.stream.flush()
