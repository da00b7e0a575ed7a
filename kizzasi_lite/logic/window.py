"""Sliding-window checks: a statistic of the last ``window`` samples of one channel, in bounds.

Statistics: ``mean``; ``variance`` (population, divided by ``window``); ``range`` (max - min);
``trend`` (the least-squares slope per step of a line through the window). The checker keeps the
last ``window`` samples of the channel for every stream, so its memory is ``B x window``, and
works on any backend (the buffer is rebuilt with ``concat``, never written in place).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kizzasi_lite.backends import namespace
from kizzasi_lite.errors import ConfigError, InputError
from kizzasi_lite.logic.monitor import Verdict

STATISTICS = ("mean", "variance", "range", "trend")


@dataclass(frozen=True)
class WindowResult:
    """``value`` (B,) the statistic (NaN until the window is full); ``verdicts`` per stream."""

    value: Any
    verdicts: list[Verdict]

    @property
    def ok(self) -> list[bool]:
        return [v != Verdict.VIOLATED for v in self.verdicts]


class WindowChecker:
    """Check ``lo <= statistic(x_channel[t-window+1 .. t]) <= hi`` at every step.

    The verdict is UNDECIDED until ``window`` samples have been seen, then SATISFIED or VIOLATED
    for the current window (a window check is a condition on the present, not on the stream).
    """

    def __init__(
        self,
        window: int,
        channel: int = 0,
        statistic: str = "mean",
        lo: float = -math.inf,
        hi: float = math.inf,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(f"window must be a whole number >= 1, got {window!r}")
        if statistic not in STATISTICS:
            raise ConfigError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
        if statistic in ("variance", "trend") and window < 2:
            raise ConfigError(f"a {statistic} needs a window of at least 2 samples")
        if not lo <= hi:
            raise ConfigError(f"need lo <= hi, got lo={lo!r}, hi={hi!r}")
        self.window, self.channel, self.statistic = window, int(channel), statistic
        self.lo, self.hi = float(lo), float(hi)
        self.reset()

    def reset(self) -> None:
        self._buf: Any = None  # (B, n) with n <= window

    def update(self, sample: Any) -> WindowResult:
        """Feed one sample (C,) or a batch (B, C); returns the statistic and verdicts."""
        xp = namespace(sample)
        x = sample if sample.ndim == 2 else sample[None, :]
        if x.shape[1] <= self.channel:
            raise InputError(f"the check reads channel {self.channel}, samples have {x.shape[1]}")
        col = x[:, self.channel : self.channel + 1]  # (B, 1)
        if self._buf is not None and self._buf.shape[0] != col.shape[0]:
            raise InputError(
                f"the checker follows {self._buf.shape[0]} streams, got {col.shape[0]}; reset()"
            )
        buf = col if self._buf is None else xp.concat([self._buf, col], axis=1)
        if buf.shape[1] > self.window:
            buf = buf[:, buf.shape[1] - self.window :]
        self._buf = buf
        if buf.shape[1] < self.window:
            nan = xp.full((buf.shape[0],), math.nan, dtype=buf.dtype)
            return WindowResult(nan, [Verdict.UNDECIDED] * buf.shape[0])
        value = self._statistic(xp, buf)  # (B,)
        inside = (value >= self.lo) & (value <= self.hi)
        verdicts = [
            Verdict.SATISFIED if bool(inside[b]) else Verdict.VIOLATED for b in range(buf.shape[0])
        ]
        return WindowResult(value, verdicts)

    def _statistic(self, xp: Any, buf: Any) -> Any:
        if self.statistic == "mean":
            return xp.mean(buf, axis=1)
        if self.statistic == "variance":
            d = buf - xp.mean(buf, axis=1, keepdims=True)
            return xp.mean(d * d, axis=1)
        if self.statistic == "range":
            return xp.max(buf, axis=1) - xp.min(buf, axis=1)
        n = self.window  # trend: slope of the least-squares line through (t, x_t)
        t = xp.arange(n, dtype=buf.dtype) - (n - 1) / 2.0
        d = buf - xp.mean(buf, axis=1, keepdims=True)
        return xp.sum(d * t, axis=1) / (n * (n * n - 1) / 12.0)


__all__ = ["STATISTICS", "WindowChecker", "WindowResult"]
