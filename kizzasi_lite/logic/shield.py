"""Temporal rules as guardrails: which current predictions keep a rule from being violated.

Given the obligation a rule's monitor holds before a step (the progression residual, see
:mod:`kizzasi_lite.logic.monitor`) and the state of its past operators, :func:`allowed` returns
the condition on the current sample ``x`` under which the rule is *not* violated by this step:
the Kleene value of the obligation, with the atoms of this step known and everything later
unknown, is not false. That condition is a Boolean combination of channel bounds; in
disjunctive normal form it is a union of boxes, and the guardrail set projects the prediction
onto the nearest box intersected with its other constraints (an exact projection onto a union
of convex sets: the best of the projections onto each piece).

Look-ahead under rate limits: an obligation "``x_c < v`` within ``k`` steps" can only still be
met if ``x_c < v + k * delta_c`` now, where ``delta_c`` is the rate limit of channel ``c``; the
shield requires that, so a trigger whose response could no longer be reached in time is refused
(e.g. ``G(x1 > 0.9 -> F[0,5] x1 < 0.5)`` with a rate limit of 0.05 keeps ``x1 <= 0.9``); an
obligation the static bounds forbid outright (``x1 < 0.5`` under ``Range(0.6, 1)``) counts as
unreachable, so its trigger is refused too. This
is the one-step shield of Alshiekh et al. (*Safe reinforcement learning via shielding*, AAAI
2018) specialised to bounded responses of single-channel atoms; for other obligations it
guarantees that no step violates the rule while the constraints stay jointly feasible, and a
conflict is reported (or resolved by priority) when they do not.
"""

from __future__ import annotations

import math
from itertools import product

from kizzasi_lite.errors import GuardrailInfeasibleError
from kizzasi_lite.logic.formula import (
    PAST,
    Always,
    And,
    Atom,
    Const,
    Eventually,
    Formula,
    Historically,
    Next,
    Not,
    Once,
    Or,
    Previously,
    Release,
    Since,
    Until,
)
from kizzasi_lite.logic.monitor import PastState

TRUE, FALSE = Const(True), Const(False)
MAX_BOXES = 64


def _and(*args: Formula) -> Formula:
    out = []
    for a in args:
        if a == FALSE:
            return FALSE
        if a != TRUE:
            out.append(a)
    return TRUE if not out else out[0] if len(out) == 1 else And(tuple(out))


def _or(*args: Formula) -> Formula:
    out = []
    for a in args:
        if a == TRUE:
            return TRUE
        if a != FALSE:
            out.append(a)
    return FALSE if not out else out[0] if len(out) == 1 else Or(tuple(out))


def _not(a: Formula) -> Formula:
    if isinstance(a, Const):
        return Const(not a.value)
    if isinstance(a, Atom):
        return a.negated()
    if isinstance(a, Not):
        return a.arg
    if isinstance(a, And):
        return _or(*(_not(b) for b in a.args))
    if isinstance(a, Or):
        return _and(*(_not(b) for b in a.args))
    return Not(a)


def now(f: Formula, past: PastState) -> Formula:
    """The value of pure-past ``f`` at the current step as a condition on the current sample
    (``past`` holds the state *before* the step)."""
    if isinstance(f, Const | Atom):
        return f
    if isinstance(f, Not):
        return _not(now(f.arg, past))
    if isinstance(f, And):
        return _and(*(now(a, past) for a in f.args))
    if isinstance(f, Or):
        return _or(*(now(a, past) for a in f.args))
    if isinstance(f, Previously):
        return Const(past.prev.get(f, (False, 0.0))[0])
    if isinstance(f, Since):
        before = Const(past.prev.get(f, (False, 0.0))[0])
        return _or(now(f.right, past), _and(now(f.left, past), before))
    if isinstance(f, Once | Historically):
        seen = [Const(v[0]) for v in past.window(f)]
        if f.lo == 0:
            seen.append(now(f.arg, past))
        return _or(*seen) if isinstance(f, Once) else _and(*seen)
    raise TypeError(f"not a pure-past formula: {f!r}")


class Reach:
    """What the shield knows about reaching a value later: per-channel rate limits (``inf``:
    none) and the static bounds ``lo <= x_c <= hi`` every later output will also satisfy."""

    def __init__(
        self, rates: list[float], lo: list[float] | None = None, hi: list[float] | None = None
    ):
        self.rates = list(rates)
        self.lo = list(lo) if lo is not None else [-math.inf] * len(self.rates)
        self.hi = list(hi) if hi is not None else [math.inf] * len(self.rates)


def _reach(f: Formula, steps: int | None, reach: Reach) -> Formula:
    """A condition on the current sample necessary for ``f`` to be reachable within ``steps``
    more steps (None: ever) under the rate limits and static bounds (single-channel atoms)."""
    if isinstance(f, Not) and isinstance(f.arg, Atom):
        f = f.arg.negated()
    if not isinstance(f, Atom) or f.channel >= len(reach.rates):
        return TRUE
    c, v, below = f.channel, f.value, f.op in ("<", "<=")
    edge = reach.lo[c] if below else reach.hi[c]  # the furthest any later output may go
    if not Atom(c, f.op, v).holds(edge) and math.isfinite(edge):
        return FALSE
    if steps is None or math.isinf(reach.rates[c]):
        return TRUE
    slack = steps * reach.rates[c]
    return Atom(c, f.op, v + slack if below else v - slack)


def not_false(f: Formula, past: PastState, reach: Reach | list[float]) -> Formula:
    """The condition on the current sample for obligation ``f`` not to become false now
    (``reach``: a :class:`Reach`, or just the per-channel rate limits)."""
    if not isinstance(reach, Reach):
        reach = Reach(reach)
    return _cond(f, past, reach)[0]


def _cond(f: Formula, past: PastState, rates: Reach) -> tuple[Formula, Formula]:
    """``(not false, true)`` conditions of obligation ``f`` at the current step."""
    if isinstance(f, Const | Atom):
        return f, f
    if isinstance(f, PAST):
        c = now(f, past)
        return c, c
    if isinstance(f, Not):
        nf, tr = _cond(f.arg, past, rates)
        return _not(tr), _not(nf)
    if isinstance(f, And | Or):
        parts = [_cond(a, past, rates) for a in f.args]
        join = _and if isinstance(f, And) else _or
        return join(*(p[0] for p in parts)), join(*(p[1] for p in parts))
    if isinstance(f, Next):
        return _reach(f.arg, 1, rates), FALSE
    if isinstance(f, Always):
        if f.lo > 0:
            return TRUE, FALSE
        nf, tr = _cond(f.arg, past, rates)
        return nf, (tr if f.hi == 0 else FALSE)
    if isinstance(f, Eventually):
        if f.lo > 0:
            return _reach(f.arg, f.hi, rates), FALSE
        nf, tr = _cond(f.arg, past, rates)
        later = FALSE if f.hi == 0 else _reach(f.arg, f.hi, rates)
        return _or(nf, later), tr
    if isinstance(f, Until):
        if f.lo > 0:
            return _cond(f.left, past, rates)[0], FALSE
        nf_r, tr_r = _cond(f.right, past, rates)
        if f.hi == 0:
            return nf_r, tr_r
        nf_l = _cond(f.left, past, rates)[0]
        return _or(nf_r, _and(nf_l, _reach(f.right, f.hi, rates))), tr_r
    if isinstance(f, Release):
        nf_l, tr_l = _cond(f.left, past, rates)
        if f.lo > 0:
            return TRUE, tr_l
        nf_r, tr_r = _cond(f.right, past, rates)
        if f.hi == 0:
            return nf_r, tr_r
        return nf_r, _and(tr_r, tr_l)
    raise TypeError(f"unknown formula node {f!r}")


def dnf(cond: Formula, limit: int = MAX_BOXES) -> list[list[Atom]]:
    """``cond`` (atoms, constants, and, or, not) as a list of conjunctions of atoms."""
    if cond == TRUE:
        return [[]]
    if cond == FALSE:
        return []
    if isinstance(cond, Atom):
        return [[cond]]
    if isinstance(cond, Or):
        out: list[list[Atom]] = []
        for a in cond.args:
            out.extend(dnf(a, limit))
            if len(out) > limit:
                raise GuardrailInfeasibleError(
                    f"a temporal rule needs more than {limit} alternative boxes to enforce; "
                    "monitor it (enforce=False) or simplify it"
                )
        return out
    if isinstance(cond, And):
        out = [[]]
        for a in cond.args:
            out = [x + y for x, y in product(out, dnf(a, limit))]
            if len(out) > limit:
                raise GuardrailInfeasibleError(
                    f"a temporal rule needs more than {limit} alternative boxes to enforce; "
                    "monitor it (enforce=False) or simplify it"
                )
        return out
    raise TypeError(f"not a condition on the current sample: {cond!r}")


class Box:
    """Per-channel intervals ``lo < / <= x_c < / <= hi``; ``strict`` flags open ends."""

    def __init__(self, n_channels: int) -> None:
        self.lo = [-math.inf] * n_channels
        self.hi = [math.inf] * n_channels
        self.lo_strict = [False] * n_channels
        self.hi_strict = [False] * n_channels

    def add(self, a: Atom) -> None:
        c, v = a.channel, a.value
        if a.op in ("<", "<="):
            strict = a.op == "<"
            if v < self.hi[c] or (v == self.hi[c] and strict):
                self.hi[c], self.hi_strict[c] = v, strict
        else:
            strict = a.op == ">"
            if v > self.lo[c] or (v == self.lo[c] and strict):
                self.lo[c], self.lo_strict[c] = v, strict

    def empty(self) -> bool:
        return any(
            lo > hi or (lo == hi and (ls or hs))
            for lo, hi, ls, hs in zip(self.lo, self.hi, self.lo_strict, self.hi_strict, strict=True)
        )

    def key(self) -> tuple:
        return (tuple(self.lo), tuple(self.hi), tuple(self.lo_strict), tuple(self.hi_strict))

    def contains(self, other: Box) -> bool:
        """True when every point of ``other`` lies in this box."""
        for c in range(len(self.lo)):
            if other.lo[c] < self.lo[c] or (
                other.lo[c] == self.lo[c] and self.lo_strict[c] and not other.lo_strict[c]
            ):
                return False
            if other.hi[c] > self.hi[c] or (
                other.hi[c] == self.hi[c] and self.hi_strict[c] and not other.hi_strict[c]
            ):
                return False
        return True

    def intersect(self, other: Box) -> Box:
        out = Box(len(self.lo))
        for c in range(len(self.lo)):
            for a in _box_atoms(self, c) + _box_atoms(other, c):
                out.add(a)
        return out


def _box_atoms(b: Box, c: int) -> list[Atom]:
    out = []
    if b.lo[c] > -math.inf:
        out.append(Atom(c, ">" if b.lo_strict[c] else ">=", b.lo[c]))
    if b.hi[c] < math.inf:
        out.append(Atom(c, "<" if b.hi_strict[c] else "<=", b.hi[c]))
    return out


def boxes(cond: Formula, n_channels: int) -> list[Box]:
    """The union of boxes equal to ``cond``, without empty boxes or boxes inside others."""
    out: dict[tuple, Box] = {}
    for term in dnf(cond):
        b = Box(n_channels)
        for a in term:
            b.add(a)
        if not b.empty():
            out.setdefault(b.key(), b)
    found = list(out.values())
    return [
        b
        for i, b in enumerate(found)  # keep the maximal boxes (of equal ones, the first)
        if not any(
            o.contains(b) and (not b.contains(o) or j < i) for j, o in enumerate(found) if j != i
        )
    ]


def combine(per_rule: list[list[Box]], n_channels: int) -> list[Box]:
    """Intersections of one box per rule (the alternatives for several rules at once)."""
    out = [Box(n_channels)]
    for alts in per_rule:
        out = [a.intersect(b) for a in out for b in alts]
        out = [b for b in out if not b.empty()]
        if len(out) > MAX_BOXES:
            raise GuardrailInfeasibleError(
                f"the temporal rules need more than {MAX_BOXES} alternative boxes at once; "
                "monitor some of them (enforce=False)"
            )
    return out


__all__ = ["Box", "Reach", "boxes", "combine", "dnf", "not_false", "now"]
