"""Residual obligations of formula progression, kept in a lattice normal form.

After ``n`` samples a monitor holds what the rest of the stream must still do: a min/max
(and/or) combination of constants and *obligations* (temporal subformulas, with their windows
shifted, to be evaluated from the next step on; pure-past subformulas at a later step). It is
stored in disjunctive normal form,

    residual = max over terms T of  min(c_T, min of the obligations in T)

as a dict ``{frozenset(T): c_T}``, with a Boolean (``c_T = True``) or a robustness (``c_T`` a
float) constant per term. Equal terms merge (``max(min(c1, R), min(c2, R)) = min(max(c1, c2),
R)``), and a term is dropped when another with fewer obligations and a larger constant
dominates it (absorption). Formulas are put in negation normal form first, so every residual
is monotone in its obligations: its Kleene value is true iff it holds with every obligation
false, and its robustness ranges over ``[value at all -inf, value at all +inf]``.

The obligations are subformulas of the original formula (bounded windows shifted), so there
are finitely many, and so are the terms over them: memory stays bounded however long the
stream, unlike naive progression, whose nested residuals grow for ``G(p -> q U r)``.
"""

from __future__ import annotations

import math
from typing import Any

from kizzasi_lite.logic.formula import (
    PAST,
    Always,
    And,
    Atom,
    Const,
    Eventually,
    Formula,
    Next,
    Not,
    Or,
    Release,
    Until,
)

_INF = math.inf
Residual = dict  # frozenset[Formula] -> constant


class Domain:
    """Boolean (``index`` 0) or robustness (``index`` 1) constants of residuals."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.top = True if index == 0 else _INF
        self.bottom = False if index == 0 else -_INF

    def meet(self, a: Any, b: Any) -> Any:
        return (a and b) if self.index == 0 else min(a, b)

    def join(self, a: Any, b: Any) -> Any:
        return (a or b) if self.index == 0 else max(a, b)

    def neg(self, a: Any) -> Any:
        return (not a) if self.index == 0 else -a


BOOL, ROB = Domain(0), Domain(1)


def const(v: Any, dom: Domain) -> Residual:
    return {} if v == dom.bottom else {frozenset(): v}


def obligation(f: Formula, dom: Domain) -> Residual:
    return {frozenset((f,)): dom.top}


def _absorb(terms: Residual, dom: Domain) -> Residual:
    """Drop every term dominated by one with a subset of its obligations and a constant at
    least as large (it can never be the maximum)."""
    order = sorted(terms.items(), key=lambda kv: len(kv[0]))
    kept: list[tuple[frozenset, Any]] = []
    for t, c in order:
        if c == dom.bottom:
            continue
        if any(k <= t and dom.join(kc, c) == kc for k, kc in kept):
            continue
        kept.append((t, c))
    return dict(kept)


def join(a: Residual, b: Residual, dom: Domain) -> Residual:
    out = dict(a)
    for t, c in b.items():
        out[t] = dom.join(out[t], c) if t in out else c
    return _absorb(out, dom)


def meet(a: Residual, b: Residual, dom: Domain) -> Residual:
    out: Residual = {}
    for t1, c1 in a.items():
        for t2, c2 in b.items():
            t, c = t1 | t2, dom.meet(c1, c2)
            out[t] = dom.join(out[t], c) if t in out else c
    return _absorb(out, dom)


def of_formula(f: Formula, dom: Domain) -> Residual:
    """The residual equal to ``f`` (in negation normal form) before any sample."""
    if isinstance(f, Const):
        return const(dom.top if f.value else dom.bottom, dom)
    if isinstance(f, And | Or):
        parts = [of_formula(a, dom) for a in f.args]
        out = parts[0]
        for p in parts[1:]:
            out = meet(out, p, dom) if isinstance(f, And) else join(out, p, dom)
        return out
    return obligation(f, dom)


def to_formula(r: Residual) -> Formula:
    """A Boolean residual as a formula (``Or`` of ``And`` of obligations)."""
    if not r:
        return Const(False)
    terms: list[Formula] = []
    for t in r:
        if not t:
            return Const(True)
        items = sorted(t, key=repr)
        terms.append(items[0] if len(items) == 1 else And(tuple(items)))
    return terms[0] if len(terms) == 1 else Or(tuple(terms))


def _shift(hi: int | None) -> int | None:
    return None if hi is None else hi - 1


def step(r: Residual, x: list[float], past: Any, dom: Domain) -> Residual:
    """The residual for the next step after ``r`` sees sample ``x`` (``past``: the values of the
    pure-past subformulas at this step, ``past.values[node] = (truth, robustness)``)."""
    memo: dict[Formula, Residual] = {}
    out: Residual = {}
    for t, c in r.items():
        acc = const(c, dom)
        for f in t:
            if f not in memo:
                memo[f] = _now(f, x, past, dom)
            acc = meet(acc, memo[f], dom)
            if not acc:
                break
        out = join(out, acc, dom)
    return out


def _now(f: Formula, x: list[float], past: Any, dom: Domain) -> Residual:
    """What obligation ``f`` becomes once the current sample ``x`` is known."""
    if isinstance(f, Atom):
        return const(f.holds(x[f.channel]) if dom.index == 0 else f.margin(x[f.channel]), dom)
    if isinstance(f, PAST):
        return const(past.values[f][dom.index], dom)
    if isinstance(f, Not):  # only around a pure-past node in negation normal form
        return const(dom.neg(past.values[f.arg][dom.index]), dom)
    if isinstance(f, Next):
        return of_formula(f.arg, dom)
    if isinstance(f, Always | Eventually):
        combine = meet if isinstance(f, Always) else join
        if f.lo > 0:
            return obligation(type(f)(f.arg, f.lo - 1, _shift(f.hi)), dom)
        here = _now_formula(f.arg, x, past, dom)
        if f.hi == 0:
            return here
        later = f if f.hi is None else type(f)(f.arg, 0, f.hi - 1)
        return combine(here, obligation(later, dom), dom)
    if isinstance(f, Until | Release):
        outer, inner = (join, meet) if isinstance(f, Until) else (meet, join)
        left = _now_formula(f.left, x, past, dom)
        if f.lo > 0:
            later = type(f)(f.left, f.right, f.lo - 1, _shift(f.hi))
            return inner(left, obligation(later, dom), dom)
        right = _now_formula(f.right, x, past, dom)
        if f.hi == 0:
            return right
        later = f if f.hi is None else type(f)(f.left, f.right, 0, f.hi - 1)
        return outer(right, inner(left, obligation(later, dom), dom), dom)
    raise TypeError(f"not an obligation: {f!r}")


def _now_formula(f: Formula, x: list[float], past: Any, dom: Domain) -> Residual:
    """A subformula (possibly an And/Or) evaluated at the current sample."""
    return step(of_formula(f, dom), x, past, dom)


def interval(r: Residual) -> tuple[float, float]:
    """The robustness interval of a robustness residual: obligations range over all reals."""
    if not r:
        return -_INF, -_INF
    lo = max((c if not t else -_INF) for t, c in r.items())
    return lo, max(r.values())


def size(r: Residual) -> int:
    """Memory of a residual: its terms and the obligations they hold."""
    return sum(1 + len(t) for t in r)


__all__ = [
    "BOOL",
    "ROB",
    "Domain",
    "interval",
    "join",
    "meet",
    "of_formula",
    "size",
    "step",
    "to_formula",
]
