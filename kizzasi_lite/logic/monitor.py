"""Online monitors for temporal formulas: a three-valued verdict and a robustness interval.

Semantics (what "the verdict after ``n`` samples" means). The formula is evaluated at the first
sample of the stream over the ``n`` samples seen so far, in Kleene's three-valued logic, where
everything said about a sample not seen yet is *unknown*: atoms and pure-past subformulas at
unseen steps are unknown, future operators range over seen and unseen steps alike. The verdict
is ``SATISFIED`` / ``VIOLATED`` when that value is true / false, ``UNDECIDED`` otherwise. It is
sound (Bauer, Leucker & Schallhart, *Runtime verification for LTL and TLTL*, TOSEM 2011): a
decided verdict holds for every continuation of the stream and never changes. It is the Kleene
approximation of their LTL3 verdict, so a few tautologies (``F p | !F p``) stay undecided.

Robustness (Fainekos & Pappas 2009; Donzé & Maler 2010): the quantitative semantics, with
``x_c <= v`` scored ``v - x_c``, ``!`` as negation, ``&``/``G`` as min and ``|``/``F`` as max.
The monitor reports the interval ``[lower, upper]`` that contains the robustness of every
continuation, with unseen values taken as ``[-inf, +inf]`` (Deshmukh et al., *Robust online
monitoring of signal temporal logic*, FMSD 2017). ``lower > 0`` implies SATISFIED and
``upper < 0`` implies VIOLATED.

The algorithm is formula progression (Bacchus & Kabanza 1998; Havelund & Rosu 2001): after each
sample the formula is rewritten into the obligation the rest of the stream must meet, kept in a
lattice normal form with constants folded and dominated terms dropped
(:mod:`kizzasi_lite.logic.residual`); pure-past subformulas are evaluated with one summary
value each, plus a buffer of ``b`` values for a bounded ``O[a,b]`` / ``H[a,b]`` (Havelund &
Rosu 2002). Memory is therefore bounded by the formula (its size and its windows), not by the
length of the stream.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kizzasi_lite.errors import InputError
from kizzasi_lite.logic import residual
from kizzasi_lite.logic.formula import (
    PAST,
    And,
    Atom,
    Const,
    Formula,
    Historically,
    Not,
    Once,
    Or,
    Previously,
    Since,
    channels,
    nnf,
    parse,
    simplify,
    subformulas,
)

_INF = math.inf


class Verdict(StrEnum):
    """The three-valued verdict of a monitor."""

    SATISFIED = "satisfied"
    VIOLATED = "violated"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class MonitorResult:
    """The verdict after a sample, the robustness interval, and the number of samples seen."""

    verdict: Verdict
    robustness: tuple[float, float]
    steps: int

    @property
    def lower(self) -> float:
        return self.robustness[0]

    @property
    def upper(self) -> float:
        return self.robustness[1]


# ------------------------------------------------------------------------- the past operators
class PastState:
    """Values of every pure-past subformula at the current step, with constant memory each.

    ``values[node] = (truth, robustness)`` after :meth:`step`. The state before a step is what
    the shield reads to know what the current sample must do (:meth:`previous`).
    """

    def __init__(self, formula: Formula) -> None:
        inside: dict[Formula, None] = {}
        for g in subformulas(formula):
            if isinstance(g, PAST):
                for h in subformulas(g):
                    inside.setdefault(h, None)
        self.nodes = list(inside)  # children before parents
        self.t = 0
        self.prev: dict[Formula, tuple[bool, float]] = {}  # own value at t-1 (Y: child's)
        self.buf: dict[Formula, deque] = {}  # bounded windows: child (or summary) values
        self.values: dict[Formula, tuple[bool, float]] = {}

    def step(self, x: list[float]) -> None:
        """Advance by one sample ``x`` (a list of floats, one per channel)."""
        vals: dict[Formula, tuple[bool, float]] = {}
        for g in self.nodes:
            vals[g] = self._value(g, vals, x)
        for g in self.nodes:  # commit the state for the next step
            if isinstance(g, Previously):
                self.prev[g] = vals[g.arg]
            elif isinstance(g, Since):
                self.prev[g] = vals[g]
            elif isinstance(g, Once | Historically):
                self._push(g, vals)
        self.values = vals
        self.t += 1

    def _push(self, g: Once | Historically, vals: dict) -> None:
        if g.hi is None:
            summary = self._summary(g, vals[g.arg])
            self.prev[g] = summary
            if g.lo:
                self.buf.setdefault(g, deque(maxlen=g.lo)).append(summary)
        elif g.hi:
            self.buf.setdefault(g, deque(maxlen=g.hi)).append(vals[g.arg])

    def _summary(self, g: Once | Historically, child: tuple[bool, float]) -> tuple[bool, float]:
        """The unbounded aggregate over steps 0..t of the child (O: or/max, H: and/min)."""
        before = self.prev.get(g, _identity(g))
        return _combine(g, child, before)

    def window(self, g: Once | Historically) -> list[tuple[bool, float]]:
        """The values before the current step that ``g`` aggregates (all but the current one)."""
        if g.hi is None:
            if g.lo == 0:
                return [self.prev[g]] if g in self.prev else []
            b = self.buf.get(g, ())
            return [b[-g.lo]] if len(b) >= g.lo else []
        b = list(self.buf.get(g, ()))  # child values at steps t-len .. t-1
        keep = len(b) - max(g.lo - 1, 0) if g.lo else len(b)
        return b[: max(keep, 0)] if g.lo else b

    def _value(self, g: Formula, vals: dict, x: list[float]) -> tuple[bool, float]:
        if isinstance(g, Const):
            return g.value, (_INF if g.value else -_INF)
        if isinstance(g, Atom):
            return g.holds(x[g.channel]), g.margin(x[g.channel])
        if isinstance(g, Not):
            b, r = vals[g.arg]
            return not b, -r
        if isinstance(g, And | Or):
            parts = [vals[a] for a in g.args]
            if isinstance(g, And):
                return all(p[0] for p in parts), min(p[1] for p in parts)
            return any(p[0] for p in parts), max(p[1] for p in parts)
        if isinstance(g, Previously):
            return self.prev.get(g, (False, -_INF))
        if isinstance(g, Since):
            right, left = vals[g.right], vals[g.left]
            before = self.prev.get(g, (False, -_INF))
            return right[0] or (left[0] and before[0]), max(right[1], min(left[1], before[1]))
        if isinstance(g, Once | Historically):
            out = _identity(g)
            for v in self.window(g):
                out = _combine(g, v, out)
            if g.lo == 0:
                out = _combine(g, vals[g.arg], out)
            return out
        raise TypeError(f"not a pure-past formula: {g!r}")


def _identity(g: Formula) -> tuple[bool, float]:
    return (False, -_INF) if isinstance(g, Once) else (True, _INF)


def _combine(g: Formula, a: tuple[bool, float], b: tuple[bool, float]) -> tuple[bool, float]:
    if isinstance(g, Once):
        return a[0] or b[0], max(a[1], b[1])
    return a[0] and b[0], min(a[1], b[1])


# ---------------------------------------------------------------------------------- monitors
class StreamMonitor:
    """The progression state of one stream: past values, Boolean and robustness residuals
    (:mod:`kizzasi_lite.logic.residual`)."""

    def __init__(self, formula: Formula) -> None:
        formula = simplify(nnf(simplify(formula)))
        self.formula = formula
        self.past = PastState(formula)
        self.bool_residual = residual.of_formula(formula, residual.BOOL)
        self.rob_residual = residual.of_formula(formula, residual.ROB)
        self.steps = 0

    @property
    def truth(self) -> Formula:
        """The Boolean obligation for the next sample, as a formula (what the shield reads)."""
        return residual.to_formula(self.bool_residual)

    def step(self, x: list[float]) -> MonitorResult:
        self.past.step(x)
        self.bool_residual = residual.step(self.bool_residual, x, self.past, residual.BOOL)
        self.rob_residual = residual.step(self.rob_residual, x, self.past, residual.ROB)
        self.steps += 1
        return self.result()

    def result(self) -> MonitorResult:
        r = self.bool_residual
        if not r:
            verdict = Verdict.VIOLATED
        elif frozenset() in r:
            verdict = Verdict.SATISFIED
        else:
            verdict = Verdict.UNDECIDED
        return MonitorResult(verdict, residual.interval(self.rob_residual), self.steps)

    def memory(self) -> int:
        """Terms and obligations held by both residuals (bounded: see the residual module)."""
        return residual.size(self.bool_residual) + residual.size(self.rob_residual)


def rows_of(sample: Any) -> list[list[float]]:
    """A sample (C,) or a batch (B, C) of any backend, or nested lists, as lists of floats."""
    if hasattr(sample, "shape"):
        from kizzasi_lite.logic.projection import host_list

        shape = tuple(sample.shape)
        if len(shape) not in (1, 2):
            raise InputError(f"a sample is (C,) or (B, C), got shape {shape}")
        rows = host_list(getattr(sample, "value", sample))
        rows = rows if len(shape) == 2 else [rows]
        return [[float(v) for v in r] for r in rows]
    rows = list(sample)
    if rows and not isinstance(rows[0], int | float):
        return [[float(v) for v in r] for r in rows]
    return [[float(v) for v in rows]]


class Monitor:
    """Online monitor of a temporal formula over one stream, or a batch of streams.

    ``update(sample)``: ``sample`` of shape (C,) returns a :class:`MonitorResult`; a batch
    (B, C) returns a list of them (one independent monitor per stream).
    """

    def __init__(self, formula: Formula | str, *, names: dict[str, int] | None = None) -> None:
        self.formula = parse(formula, names=names)
        self._need = max(channels(self.formula), default=-1) + 1
        self.reset()

    def reset(self) -> None:
        """Forget every sample seen (the verdicts start again from UNDECIDED)."""
        self._streams: list[StreamMonitor] | None = None
        self._batched = False

    def update(self, sample: Any) -> MonitorResult | list[MonitorResult]:
        """Feed one sample (C,) or a batch (B, C) and return the verdict(s) after it."""
        rows = rows_of(sample)
        batched = hasattr(sample, "shape") and len(sample.shape) == 2
        batched = batched or (not hasattr(sample, "shape") and len(rows) > 1)
        for r in rows:
            if len(r) < self._need:
                raise InputError(
                    f"the formula reads channel x{self._need - 1}, a sample has {len(r)} values"
                )
            if not all(math.isfinite(v) for v in r):
                raise InputError("a monitored sample has NaN or infinite values")
        if self._streams is None:
            self._streams = [StreamMonitor(self.formula) for _ in rows]
            self._batched = batched
        if len(rows) != len(self._streams):
            raise InputError(
                f"the monitor follows {len(self._streams)} streams, got {len(rows)}; reset() first"
            )
        out = [m.step(r) for m, r in zip(self._streams, rows, strict=True)]
        return out if self._batched else out[0]

    def run(self, trace: Any) -> list[MonitorResult]:
        """Feed every sample of ``trace`` (T, C) in order; returns the result after each."""
        return [self.update(row) for row in rows_of(trace)]

    @property
    def verdict(self) -> Verdict | list[Verdict]:
        if not self._streams:
            return Verdict.UNDECIDED
        out = [m.result().verdict for m in self._streams]
        return out if self._batched else out[0]

    def memory(self) -> int:
        """The total size of the residual obligations held (a bounded quantity)."""
        return sum(m.memory() for m in self._streams or [])


def check(formula: Formula | str, trace: Any) -> MonitorResult:
    """The verdict and robustness interval of ``formula`` on a finite ``trace`` (T, C)."""
    results = Monitor(formula).run(trace)
    if not results:
        return MonitorResult(Verdict.UNDECIDED, (-_INF, _INF), 0)
    return results[-1]


__all__ = ["Monitor", "MonitorResult", "PastState", "StreamMonitor", "Verdict", "check"]
