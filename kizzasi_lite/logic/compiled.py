"""Constraints lowered to arrays for a given channel count, backend and dtype.

A :class:`GuardrailSet` is compiled once per ``(C, backend, dtype)``: boxes and rate limits become
per-channel bound vectors, linear constraints the rows of a slab matrix, quadratic constraints
padded ``C x C`` matrices with their eigendecomposition (computed in plain Python at compile
time, so no backend needs ``eigh``). The host-side lists are kept too: they name the constraint
behind each bound when a report or an error needs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kizzasi_lite.logic.constraints import (
    Constraint,
    GreaterThan,
    LessThan,
    Linear,
    Quadratic,
    Range,
    RateLimit,
    TemporalRule,
)
from kizzasi_lite.logic.linalg import jacobi_eigh
from kizzasi_lite.logic.projection import Problem, Quad


@dataclass
class Entry:
    """One constraint of a set: its full name, priority and the order it was added in."""

    name: str
    constraint: Constraint
    priority: int
    order: int


@dataclass
class Compiled:
    """Host-side lowering of a set of entries for predictions of ``C`` channels."""

    C: int
    boxes: list[tuple[int, list[int], float, float]] = field(default_factory=list)
    rates: list[tuple[int, list[int], float]] = field(default_factory=list)
    rows: list[tuple[int, list[float], float, float]] = field(default_factory=list)
    quads: list[tuple[int, list[list[float]], list[float], float, list[float], list]] = field(
        default_factory=list
    )
    rules: list[int] = field(default_factory=list)
    arrays: dict = field(default_factory=dict)

    def static_box(self, skip: set[int] = frozenset()) -> tuple[list[float], list[float]]:
        """The intersection of the static boxes (entries in ``skip`` left out)."""
        lo, hi = [-math.inf] * self.C, [math.inf] * self.C
        for e, chans, a, b in self.boxes:
            if e in skip:
                continue
            for c in chans:
                lo[c], hi[c] = max(lo[c], a), min(hi[c], b)
        return lo, hi

    def by_channel(self) -> tuple[list[list], list[list]]:
        """Per channel: the static boxes ``(entry, lo, hi)`` and rate limits ``(entry, delta)``
        that touch it (cached; used to name the constraint behind a bound)."""
        if "by_channel" not in self.arrays:
            boxes: list[list] = [[] for _ in range(self.C)]
            rates: list[list] = [[] for _ in range(self.C)]
            for e, chans, lo, hi in self.boxes:
                for c in chans:
                    boxes[c].append((e, lo, hi))
            for e, chans, d in self.rates:
                for c in chans:
                    rates[c].append((e, d))
            self.arrays["by_channel"] = (boxes, rates)
        return self.arrays["by_channel"]

    def rate_vector(self, skip: set[int] = frozenset()) -> list[float]:
        """The tightest rate limit of each channel (``inf`` where none)."""
        out = [math.inf] * self.C
        for e, chans, d in self.rates:
            if e in skip:
                continue
            for c in chans:
                out[c] = min(out[c], d)
        return out


def compile_entries(entries: list[Entry], C: int) -> Compiled:
    """Lower ``entries`` for predictions of ``C`` channels (raises InputError on a mismatch)."""
    out = Compiled(C)
    for i, e in enumerate(entries):
        con = e.constraint
        chans = con.channel_list(C)
        if isinstance(con, Range | LessThan | GreaterThan):
            lo, hi = con.bounds()
            out.boxes.append((i, chans, lo, hi))
        elif isinstance(con, RateLimit):
            out.rates.append((i, chans, con.delta))
        elif isinstance(con, Linear):
            lo, hi = con.slab()
            out.rows.append((i, con.row(C), lo, hi))
        elif isinstance(con, Quadratic):
            Q, c = con.full(C)
            w, V = jacobi_eigh(Q)
            top = max(max(abs(v) for v in w), 1e-300)
            w = [v if v > 1e-13 * top else 0.0 for v in w]
            out.quads.append((i, Q, c, con.b, w, V))
        elif isinstance(con, TemporalRule):
            out.rules.append(i)
    return out


def _t_cap(w: list[float], ct: list[float]) -> float:
    """:class:`Quad`'s ``t_cap`` from its eigenvalues ``w`` and ``ct = V^T c``: where ``c`` has
    no part along a zero eigenvalue the quadratic is bounded below, and past ``1e20 / min(w > 0)``
    the projection's point is within ``5e-21`` of its distance from the minimiser."""
    if any(wi == 0.0 and ci != 0.0 for wi, ci in zip(w, ct, strict=True)) or max(w) <= 0.0:
        return math.inf
    return 1e20 / min(wi for wi in w if wi > 0.0)


def arrays(comp: Compiled, xp: Any, dtype: Any) -> dict:
    """The device arrays of ``comp`` on backend ``xp`` in ``dtype`` (cached)."""
    key = (id(xp), str(dtype))
    hit = comp.arrays.get(key)
    if hit is not None:
        return hit
    lo, hi = comp.static_box()
    out: dict = {
        "L": xp.asarray(lo, dtype=dtype),
        "U": xp.asarray(hi, dtype=dtype),
        "rate": xp.asarray(comp.rate_vector(), dtype=dtype),
    }
    if comp.rows:
        out["A"] = xp.asarray([r[1] for r in comp.rows], dtype=dtype)
        out["l"] = xp.asarray([r[2] for r in comp.rows], dtype=dtype)
        out["u"] = xp.asarray([r[3] for r in comp.rows], dtype=dtype)
    quads = []
    for _, Q, c, _b, w, V in comp.quads:
        ct = [sum(V[i][j] * c[i] for i in range(comp.C)) for j in range(comp.C)]
        quads.append(
            Quad(
                Q=xp.asarray(Q, dtype=dtype),
                c=xp.asarray(c, dtype=dtype),
                V=xp.asarray(V, dtype=dtype),
                w=xp.asarray(w, dtype=dtype),
                ct=xp.asarray(ct, dtype=dtype),
                positive=min(w) > 0.0,
                t_cap=_t_cap(w, ct),
            )
        )
    out["quads"] = quads
    if comp.quads:
        out["qb"] = xp.asarray([q[3] for q in comp.quads], dtype=dtype)
    comp.arrays[key] = out
    return out


def problem(
    comp: Compiled,
    xp: Any,
    dtype: Any,
    B: int,
    *,
    L: Any,
    U: Any,
    skip: set[int] = frozenset(),
) -> Problem:
    """The projection problem of ``B`` streams with box ``L``, ``U`` (B, C), leaving out the
    slab and quadratic entries in ``skip``."""
    arr = arrays(comp, xp, dtype)
    p = Problem(L=L, U=U, quads=arr["quads"])
    if comp.rows:
        lo = xp.broadcast_to(arr["l"][None, :], (B, len(comp.rows)))
        hi = xp.broadcast_to(arr["u"][None, :], (B, len(comp.rows)))
        if skip:
            off = xp.asarray([r[0] in skip for r in comp.rows])
            lo, hi = xp.where(off, -math.inf, lo), xp.where(off, math.inf, hi)
        p.A, p.l, p.u = arr["A"], lo, hi
    if comp.quads:
        qb = xp.broadcast_to(arr["qb"][None, :], (B, len(comp.quads)))
        if skip:
            off = xp.asarray([q[0] in skip for q in comp.quads])
            qb = xp.where(off, math.inf, qb)
        p.qb = qb
    return p


__all__ = ["Compiled", "Entry", "arrays", "compile_entries", "problem"]
