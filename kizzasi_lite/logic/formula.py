"""Temporal formulas over an output stream: the syntax tree, a small text syntax and its parser.

A formula talks about a stream of samples ``x[t]`` of ``C`` channels. Atoms compare one channel
with a constant (``x0 <= 1.0``, ``x2 > -0.5``); formulas combine them with

========================  =========================================================
``!φ``  ``φ & ψ``  ``φ | ψ``  ``φ -> ψ``   not, and, or, implies (``->`` is ``!φ | ψ``)
``X φ``                   next: φ holds at the next step
``G φ``  ``G[a,b] φ``     always (from now on / at every step in ``[t+a, t+b]``)
``F φ``  ``F[a,b] φ``     eventually (some step from now on / in ``[t+a, t+b]``)
``φ U ψ`` ``φ U[a,b] ψ``  until: ψ at some step ``j`` (in the window), φ at every step before
``φ R ψ`` ``φ R[a,b] ψ``  release, the dual of until: ψ holds up to and including the step
                          where φ first holds (forever if φ never does)
``Y φ``                   previously: φ held at the previous step (false at the first step)
``O φ``  ``O[a,b] φ``     once: φ held at some past step (in ``[t-b, t-a]``)
``H φ``  ``H[a,b] φ``     historically: φ held at every past step (in ``[t-b, t-a]``)
``φ S ψ``                 since: ψ held at some past step ``j`` and φ at every step after it
========================  =========================================================

Bounds are whole numbers of steps, ``0 <= a <= b``; ``b`` may be ``inf``. Past operators may only
contain past operators, atoms and Boolean connectives (the pure-past fragment that a monitor
evaluates with constant memory, Havelund & Rosu 2002). Precedence, loosest first: ``->`` (right
associative), ``|``, ``&``, the binary temporal operators ``U R S`` (right associative), then the
prefix operators. ``true`` and ``false`` are constants; channel names other than ``x<k>`` can be
declared with ``parse(text, names={"temp": 0})``.

References: Pnueli, *The temporal logic of programs* (FOCS 1977); Maler & Nickovic, *Monitoring
temporal properties of continuous signals* (FORMATS 2004) for the bounded operators; Lichtenstein,
Pnueli & Zuck, *The glory of the past* (1985) for the past operators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

from kizzasi_lite.errors import InputError

OPS = ("<", "<=", ">", ">=")
MAX_DEPTH = 64  # nesting levels of a formula: the monitors and shields recurse over them
MAX_NODES = 10_000  # nodes of a formula written out as a tree
_NEGATED_OP = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}


class FormulaSyntaxError(InputError):
    """A temporal formula could not be parsed; the message shows where and what was expected."""


# --------------------------------------------------------------------------------------- nodes
@dataclass(frozen=True)
class Const:
    """The constant ``true`` or ``false``."""

    value: bool


@dataclass(frozen=True)
class Atom:
    """``x<channel> <op> <value>`` with op one of ``< <= > >=``."""

    channel: int
    op: str
    value: float

    def holds(self, x: float) -> bool:
        """The truth of the atom for channel value ``x``."""
        if self.op == "<":
            return x < self.value
        if self.op == "<=":
            return x <= self.value
        if self.op == ">":
            return x > self.value
        return x >= self.value

    def margin(self, x: float) -> float:
        """The robustness of the atom: how far ``x`` is inside (> 0) or outside (< 0) its bound."""
        return self.value - x if self.op in ("<", "<=") else x - self.value

    def negated(self) -> Atom:
        return Atom(self.channel, _NEGATED_OP[self.op], self.value)


@dataclass(frozen=True)
class Not:
    arg: Formula


@dataclass(frozen=True)
class And:
    args: tuple[Formula, ...]


@dataclass(frozen=True)
class Or:
    args: tuple[Formula, ...]


@dataclass(frozen=True)
class Next:
    arg: Formula


@dataclass(frozen=True)
class Always:
    """``G[lo, hi] arg``; ``hi=None`` is unbounded."""

    arg: Formula
    lo: int = 0
    hi: int | None = None


@dataclass(frozen=True)
class Eventually:
    """``F[lo, hi] arg``; ``hi=None`` is unbounded."""

    arg: Formula
    lo: int = 0
    hi: int | None = None


@dataclass(frozen=True)
class Until:
    """``left U[lo, hi] right``: right at some step j in the window, left at every step before j."""

    left: Formula
    right: Formula
    lo: int = 0
    hi: int | None = None


@dataclass(frozen=True)
class Release:
    """``left R[lo, hi] right``: at every step j in the window, right holds or left held before j."""

    left: Formula
    right: Formula
    lo: int = 0
    hi: int | None = None


@dataclass(frozen=True)
class Previously:
    arg: Formula


@dataclass(frozen=True)
class Once:
    arg: Formula
    lo: int = 0
    hi: int | None = None


@dataclass(frozen=True)
class Historically:
    arg: Formula
    lo: int = 0
    hi: int | None = None


@dataclass(frozen=True)
class Since:
    left: Formula
    right: Formula


Formula = Union[  # noqa: UP007 (a runtime alias used in isinstance-free annotations)
    Const,
    Atom,
    Not,
    And,
    Or,
    Next,
    Always,
    Eventually,
    Until,
    Release,
    Previously,
    Once,
    Historically,
    Since,
]
FUTURE = (Next, Always, Eventually, Until, Release)
PAST = (Previously, Once, Historically, Since)


def children(f: Formula) -> tuple[Formula, ...]:
    """The direct subformulas of ``f``."""
    if isinstance(f, Const | Atom):
        return ()
    if isinstance(f, And | Or):
        return f.args
    if isinstance(f, Until | Release | Since):
        return (f.left, f.right)
    return (f.arg,)


def _measure(f: Formula) -> tuple[int, int]:
    """``(depth, size)`` of ``f``: nesting levels (an atom: 1) and nodes counted as a tree
    (a subformula shared twice counts twice, as hashing and printing see it). Iterative, and
    each distinct node object is visited once, so a formula that shares subformulas (what
    ``a <-> b`` builds) is measured in time linear in its distinct nodes."""
    seen: dict[int, tuple[int, int]] = {}
    stack: list[tuple[Formula, bool]] = [(f, False)]
    while stack:
        g, ready = stack.pop()
        if id(g) in seen:
            continue
        kids = children(g)
        if ready:
            d = 1 + max((seen[id(c)][0] for c in kids), default=0)
            n = 1 + sum(seen[id(c)][1] for c in kids)
            seen[id(g)] = (d, n)
        else:
            stack.append((g, True))
            stack.extend((c, False) for c in kids if id(c) not in seen)
    return seen[id(f)]


def depth(f: Formula) -> int:
    """The nesting depth of ``f`` (an atom or a constant: 1), computed without recursion."""
    return _measure(f)[0]


def check_depth(f: Formula) -> Formula:
    """``f`` if it is nested at most :data:`MAX_DEPTH` levels deep and has at most
    :data:`MAX_NODES` nodes (counted as a tree), else FormulaSyntaxError: monitors, shields
    and printers recurse over the formula, and hashing it walks every node."""
    d, n = _measure(f)
    if d > MAX_DEPTH:
        raise FormulaSyntaxError(
            f"the formula is nested {d} levels deep, more than the limit of {MAX_DEPTH}; "
            "split it into several rules"
        )
    if n > MAX_NODES:
        raise FormulaSyntaxError(
            f"the formula has {n} nodes (written out as a tree), more than the limit of "
            f"{MAX_NODES}; each '<->' writes both sides twice"
        )
    return f


def subformulas(f: Formula) -> list[Formula]:
    """Every distinct subformula, children before parents (post-order)."""
    out: dict[Formula, None] = {}

    def walk(g: Formula) -> None:
        for c in children(g):
            walk(c)
        out.setdefault(g, None)

    walk(f)
    return list(out)


def is_pure_past(f: Formula) -> bool:
    """True when ``f`` has no future operator (its value at ``t`` depends on ``x[0..t]`` only)."""
    return not any(isinstance(g, FUTURE) for g in subformulas(f))


def channels(f: Formula) -> set[int]:
    """The channels the atoms of ``f`` read."""
    return {g.channel for g in subformulas(f) if isinstance(g, Atom)}


def horizon(f: Formula) -> float:
    """How many steps past ``t`` the value of ``f`` at ``t`` may depend on (``inf`` if unbounded)."""
    if isinstance(f, Const | Atom) or isinstance(f, PAST):
        return 0
    if isinstance(f, Not | And | Or):
        return max(horizon(c) for c in children(f))
    if isinstance(f, Next):
        return 1 + horizon(f.arg)
    hi = math.inf if f.hi is None else f.hi
    return hi + max(horizon(c) for c in children(f))


def past_depth(f: Formula) -> float:
    """How many past samples the past operators in ``f`` look back through explicitly.

    Unbounded past operators keep one summary value instead of samples, so they count 0.
    """
    own = 0
    if isinstance(f, Previously):
        own = 1
    elif isinstance(f, Once | Historically) and f.hi is not None:
        own = f.hi
    deeper = max((past_depth(c) for c in children(f)), default=0)
    return own + deeper


def nnf(f: Formula, negate: bool = False) -> Formula:
    """Negation normal form: negations pushed down to the atoms (past nodes are kept whole)."""
    if isinstance(f, Const):
        return Const(f.value != negate)
    if isinstance(f, Atom):
        return f.negated() if negate else f
    if isinstance(f, PAST):
        return Not(f) if negate else f
    if isinstance(f, Not):
        return nnf(f.arg, not negate)
    if isinstance(f, And | Or):
        args = tuple(nnf(a, negate) for a in f.args)
        return (Or if isinstance(f, And) == negate else And)(args)
    if isinstance(f, Next):
        return Next(nnf(f.arg, negate))
    if isinstance(f, Always | Eventually):
        kind = type(f) if not negate else (Eventually if isinstance(f, Always) else Always)
        return kind(nnf(f.arg, negate), f.lo, f.hi)
    kind = type(f) if not negate else (Release if isinstance(f, Until) else Until)
    return kind(nnf(f.left, negate), nnf(f.right, negate), f.lo, f.hi)


def is_safety(f: Formula) -> bool:
    """True when ``f`` is syntactically safe: in negation normal form it has no unbounded
    ``F`` or ``U`` (every violation shows on a finite prefix, so a shield can prevent it)."""
    for g in subformulas(nnf(f)):
        if isinstance(g, Eventually | Until) and g.hi is None:
            return False
    return True


def simplify(f: Formula) -> Formula:
    """Fold the constants of ``f`` (``G true = true``, ``a U[0,b] true = true``, ``X c = c``, ...).

    The result has the same value as ``f`` at every step, also in the three-valued and the
    robustness semantics of :mod:`kizzasi_lite.logic.monitor`; pure-past subformulas are kept
    as they are (their value depends on how many steps lie behind).
    """
    if isinstance(f, Const | Atom) or isinstance(f, PAST):
        return f
    if isinstance(f, Not):
        a = simplify(f.arg)
        if isinstance(a, Const):
            return Const(not a.value)
        return a.arg if isinstance(a, Not) else Not(a)
    if isinstance(f, And | Or):
        absorbing = isinstance(f, Or)  # true absorbs an Or, false an And
        args: list[Formula] = []
        for a in (simplify(g) for g in f.args):
            if isinstance(a, Const):
                if a.value == absorbing:
                    return Const(absorbing)
                continue
            args.extend(a.args if isinstance(a, type(f)) else (a,))
        if not args:
            return Const(not absorbing)
        return args[0] if len(args) == 1 else type(f)(tuple(args))
    if isinstance(f, Next):
        a = simplify(f.arg)
        return a if isinstance(a, Const) else Next(a)
    if isinstance(f, Always | Eventually):
        a = simplify(f.arg)
        return a if isinstance(a, Const) else type(f)(a, f.lo, f.hi)
    left, right = simplify(f.left), simplify(f.right)
    if isinstance(f, Release):  # a R b = !(!a U !b)
        dual = simplify(Until(Not(left), Not(right), f.lo, f.hi))
        if isinstance(dual, Const):
            return Const(not dual.value)
        if isinstance(left, Const) or isinstance(right, Const):
            return simplify(Not(dual))
        return Release(left, right, f.lo, f.hi)
    if isinstance(right, Const):
        if not right.value:
            return Const(False)
        return Const(True) if f.lo == 0 else simplify(Always(left, 0, f.lo - 1))
    if isinstance(left, Const):
        if left.value:
            return Eventually(right, f.lo, f.hi)
        return right if f.lo == 0 else Const(False)
    return Until(left, right, f.lo, f.hi)


__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "And",
    "Always",
    "Atom",
    "Const",
    "Eventually",
    "Formula",
    "FormulaSyntaxError",
    "Historically",
    "Next",
    "Not",
    "Once",
    "Or",
    "Previously",
    "Release",
    "Since",
    "Until",
    "channels",
    "check_depth",
    "children",
    "depth",
    "horizon",
    "is_pure_past",
    "is_safety",
    "nnf",
    "parse",
    "past_depth",
    "simplify",
    "subformulas",
    "to_text",
]

from kizzasi_lite.logic.syntax import parse, to_text  # noqa: E402 (re-exported; needs the nodes)
