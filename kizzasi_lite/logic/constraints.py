"""Constraints on a prediction ``y`` of ``C`` channels (one row per stream: ``y`` is ``(B, C)``).

=====================================  ==================================================
``Range(lo, hi, channel)``             ``lo <= y_c <= hi`` on the channel(s)
``LessThan(value, channel)``           ``y_c <= value`` (closed: a projection needs a closed set)
``GreaterThan(value, channel)``        ``y_c >= value``
``RateLimit(delta, channel)``          ``|y_c - previous_c| <= delta`` (inactive without previous)
``Linear(a, b)``                       ``a . y <= b``; ``equality=True``: ``|a . y - b| <= tol``
``Quadratic(Q, c, b)``                 ``y'Qy + c.y <= b`` with ``Q`` positive semi-definite
``TemporalRule("G(x0 <= 1)")``         a temporal-logic rule over the output stream
=====================================  ==================================================

``channel`` is an index, a sequence of indices, or None (every channel); ``Linear`` and
``Quadratic`` take ``channels`` naming the channels their coefficients refer to (None: all, in
order). Constructors reject what is malformed (``ConfigError``) and what is empty by itself
(``GuardrailInfeasibleError``: ``lo > hi``, a negative rate, ``0 . y <= -1``, a quadratic whose
minimum exceeds ``b``), so an impossible constraint never reaches a running model.

Every constraint has a differentiable ``violation(y, previous=None, squared=False)`` of shape
``y.shape[:-1]`` (a hinge, or a squared hinge, summed over its channels), written with array API
functions only, so it trains through :mod:`kizzasi_lite.autodiff`.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from kizzasi_lite.backends import namespace
from kizzasi_lite.errors import ConfigError, GuardrailInfeasibleError, InputError, KizzasiError
from kizzasi_lite.logic.formula import Formula, is_safety, parse, to_text
from kizzasi_lite.logic.linalg import jacobi_eigh

Channels = tuple[int, ...] | None


# ----------------------------------------------------------------------------- validation
def _channels(value: Any, what: str) -> Channels:
    if value is None:
        return None
    if hasattr(value, "__index__"):
        items: tuple = (value,)
    elif isinstance(value, str | bytes | dict) or not hasattr(value, "__iter__"):
        raise ConfigError(
            f"{what}: channel is an index, a sequence of indices or None, got {value!r}"
        )
    else:
        items = tuple(value)
    out = []
    for ch in items:
        if isinstance(ch, bool) or not hasattr(ch, "__index__") or operator.index(ch) < 0:
            raise ConfigError(f"{what}: a channel is a whole number >= 0, got {ch!r}")
        out.append(operator.index(ch))
    if not out:
        raise ConfigError(f"{what}: the channel list is empty (use None for every channel)")
    if len(set(out)) != len(out):
        raise ConfigError(f"{what}: channel listed twice in {tuple(out)}")
    return tuple(out)


def _number(value: Any, what: str, *, allow_inf: bool = False) -> float:
    """``value`` as a float; strings and booleans are not numbers here (a typo in a file should
    not turn into a bound). ``allow_inf``: +-inf is accepted (callers restrict the sign)."""
    if isinstance(value, str | bytes | bool) or type(value).__name__ in ("bool", "bool_"):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if math.isnan(out) or (math.isinf(out) and not allow_inf):
        wanted = "a number or +-inf, not NaN" if allow_inf else "finite"
        raise ConfigError(f"{what} must be {wanted}, got {value!r}")
    return out


def _flag(value: Any, what: str) -> bool:
    """``value`` as a bool: True, False (or a NumPy bool); nothing else."""
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    raise ConfigError(f"{what} must be True or False, got {value!r}")


def _vector(values: Any, what: str) -> tuple[float, ...]:
    try:
        if isinstance(values, str | bytes | dict):
            raise TypeError
        items = [values[i] for i in range(len(values))]
    except (TypeError, KeyError, IndexError):
        raise ConfigError(f"{what} must be a sequence of numbers, got {values!r}") from None
    return tuple(_number(v, f"{what}[{i}]") for i, v in enumerate(items))


def _label(ch: Channels) -> str:
    return "all" if ch is None else ",".join(f"x{c}" for c in ch)


# ------------------------------------------------------------------------------ base class
class Constraint(ABC):
    """Base class: a constraint knows its label, its channels and its hinge violation."""

    kind = "constraint"

    @property
    def label(self) -> str:
        """A short human-readable description used in reports and error messages."""
        return self.kind

    def channel_list(self, n_channels: int) -> list[int]:
        """The channels this constraint reads, for a prediction of ``n_channels`` channels."""
        ch = getattr(self, "channel", None) or getattr(self, "channels", None)
        out = list(range(n_channels)) if ch is None else list(ch)
        bad = [c for c in out if c >= n_channels]
        if bad:
            raise InputError(
                f"constraint {self.label} reads channel {bad[0]}, but predictions have "
                f"{n_channels} channels"
            )
        return out

    @abstractmethod
    def violation(self, y: Any, previous: Any = None, *, squared: bool = False) -> Any:
        """The hinge violation of every stream: ``y`` (..., C) -> (...,). Zero when satisfied."""

    def to_dict(self) -> dict:
        """A JSON-ready description (non-finite floats as the strings "inf" / "-inf")."""
        out: dict = {"type": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            out[f.name] = _encode(getattr(self, f.name))
        return out


def _encode(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, Formula.__args__):  # type: ignore[attr-defined]
        return to_text(value)
    return value


def _decode(value: Any) -> Any:
    if value == "inf":
        return math.inf
    if value == "-inf":
        return -math.inf
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def _hinge(xp: Any, v: Any, squared: bool) -> Any:
    h = xp.clip(v, min=0.0)
    return h * h if squared else h


def _take(xp: Any, y: Any, ch: Channels) -> Any:
    """The channels ``ch`` of ``y`` (..., C) as (..., k) (basic indexing only: autodiff-safe)."""
    if ch is None:
        return y
    return xp.stack([y[..., c] for c in ch], axis=-1)


# ------------------------------------------------------------------------------- box types
@dataclass(frozen=True)
class Range(Constraint):
    """``lo <= y_c <= hi`` on every channel in ``channel`` (None: all channels)."""

    lo: float
    hi: float
    channel: Channels = None
    kind = "range"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lo", _number(self.lo, "Range lo", allow_inf=True))
        object.__setattr__(self, "hi", _number(self.hi, "Range hi", allow_inf=True))
        object.__setattr__(self, "channel", _channels(self.channel, "Range"))
        if self.lo == math.inf or self.hi == -math.inf:  # no real number lies in such a range
            raise ConfigError(
                "Range needs a finite lo or -inf and a finite hi or inf, "
                f"got lo = {self.lo!r}, hi = {self.hi!r}"
            )
        if self.lo > self.hi:
            raise GuardrailInfeasibleError(
                f"{self.label} is empty: lo = {self.lo!r} > hi = {self.hi!r}"
            )

    @property
    def label(self) -> str:
        return f"range[{_label(self.channel)}: {self.lo!r}..{self.hi!r}]"

    def bounds(self) -> tuple[float, float]:
        return self.lo, self.hi

    def violation(self, y, previous=None, *, squared=False):
        xp = namespace(y)
        v = _take(xp, y, self.channel)
        out = 0.0 * xp.sum(v, axis=-1)
        if math.isfinite(self.lo):
            out = out + xp.sum(_hinge(xp, self.lo - v, squared), axis=-1)
        if math.isfinite(self.hi):
            out = out + xp.sum(_hinge(xp, v - self.hi, squared), axis=-1)
        return out


@dataclass(frozen=True)
class LessThan(Constraint):
    """``y_c <= value`` on every channel in ``channel`` (None: all channels)."""

    value: float
    channel: Channels = None
    kind = "less_than"

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _number(self.value, "LessThan value"))
        object.__setattr__(self, "channel", _channels(self.channel, "LessThan"))

    @property
    def label(self) -> str:
        return f"less_than[{_label(self.channel)} <= {self.value!r}]"

    def bounds(self) -> tuple[float, float]:
        return -math.inf, self.value

    def violation(self, y, previous=None, *, squared=False):
        xp = namespace(y)
        return xp.sum(_hinge(xp, _take(xp, y, self.channel) - self.value, squared), axis=-1)


@dataclass(frozen=True)
class GreaterThan(Constraint):
    """``y_c >= value`` on every channel in ``channel`` (None: all channels)."""

    value: float
    channel: Channels = None
    kind = "greater_than"

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _number(self.value, "GreaterThan value"))
        object.__setattr__(self, "channel", _channels(self.channel, "GreaterThan"))

    @property
    def label(self) -> str:
        return f"greater_than[{_label(self.channel)} >= {self.value!r}]"

    def bounds(self) -> tuple[float, float]:
        return self.value, math.inf

    def violation(self, y, previous=None, *, squared=False):
        xp = namespace(y)
        return xp.sum(_hinge(xp, self.value - _take(xp, y, self.channel), squared), axis=-1)


@dataclass(frozen=True)
class RateLimit(Constraint):
    """``|y_c - previous_c| <= delta`` on every channel in ``channel`` (None: all channels).

    Against the previous emitted output; inactive when there is none. ``violation(y)`` of a
    sequence ``y`` (B, T, C) without ``previous`` measures the steps inside the sequence.
    """

    delta: float
    channel: Channels = None
    kind = "rate_limit"

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", _number(self.delta, "RateLimit delta", allow_inf=True))
        object.__setattr__(self, "channel", _channels(self.channel, "RateLimit"))
        if self.delta < 0:
            raise GuardrailInfeasibleError(f"{self.label} is empty: delta = {self.delta!r} < 0")

    @property
    def label(self) -> str:
        return f"rate_limit[{_label(self.channel)}: {self.delta!r}/step]"

    def violation(self, y, previous=None, *, squared=False):
        xp = namespace(y, previous)
        v = _take(xp, y, self.channel)
        if previous is None:
            if y.ndim < 3:
                return 0.0 * xp.sum(v, axis=-1)
            step = v[:, 1:, ...] - v[:, :-1, ...]  # (B, T-1, k)
            inner = xp.sum(_hinge(xp, xp.abs(step) - self.delta, squared), axis=-1)
            first = 0.0 * xp.sum(v[:, :1, ...], axis=-1)  # (B, 1): no previous for step 0
            return xp.concat([first, inner], axis=1)
        p = _take(xp, previous, self.channel)
        return xp.sum(_hinge(xp, xp.abs(v - p) - self.delta, squared), axis=-1)


# ------------------------------------------------------------------------- linear, quadratic
@dataclass(frozen=True)
class Linear(Constraint):
    """``a . y <= b``, or ``|a . y - b| <= tol`` with ``equality=True``.

    ``a`` has one coefficient per channel in ``channels`` (None: per channel of the prediction).
    """

    a: tuple[float, ...]
    b: float
    equality: bool = False
    tol: float = 0.0
    channels: Channels = None
    kind = "linear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _vector(self.a, "Linear a"))
        object.__setattr__(self, "b", _number(self.b, "Linear b"))
        object.__setattr__(self, "tol", _number(self.tol, "Linear tol"))
        object.__setattr__(self, "equality", _flag(self.equality, "Linear equality"))
        object.__setattr__(self, "channels", _channels(self.channels, "Linear"))
        if self.tol < 0:
            raise ConfigError(f"Linear tol must be >= 0, got {self.tol!r}")
        if self.channels is not None and len(self.channels) != len(self.a):
            raise ConfigError(
                f"Linear: {len(self.a)} coefficients for {len(self.channels)} channels"
            )
        if not self.a:
            raise ConfigError("Linear a is empty")
        if all(v == 0.0 for v in self.a):
            lo = self.b - self.tol if self.equality else -math.inf
            if not lo <= 0.0 <= self.b + (self.tol if self.equality else 0.0):
                raise GuardrailInfeasibleError(f"{self.label} is empty: a = 0 and 0 is not allowed")
            raise ConfigError(f"{self.label}: a = 0 constrains nothing")

    @property
    def label(self) -> str:
        terms = " + ".join(
            f"{v!r}*x{c}" for v, c in zip(self.a, self.channels or range(len(self.a)), strict=True)
        )
        if self.equality:
            return f"linear[{terms} == {self.b!r} ± {self.tol!r}]"
        return f"linear[{terms} <= {self.b!r}]"

    def slab(self) -> tuple[float, float]:
        """``(l, u)`` with the constraint ``l <= a . y <= u``."""
        if self.equality:
            return self.b - self.tol, self.b + self.tol
        return -math.inf, self.b

    def row(self, n_channels: int) -> list[float]:
        """``a`` spread over the ``n_channels`` channels of a prediction."""
        chans = self.channels if self.channels is not None else tuple(range(len(self.a)))
        if self.channels is None and len(self.a) != n_channels:
            raise InputError(
                f"constraint {self.label} has {len(self.a)} coefficients, predictions have "
                f"{n_channels} channels"
            )
        self.channel_list(n_channels)
        out = [0.0] * n_channels
        for v, c in zip(self.a, chans, strict=True):
            out[c] = v
        return out

    def violation(self, y, previous=None, *, squared=False):
        xp = namespace(y)
        v = _take(xp, y, self.channels)
        a = xp.asarray(list(self.a), dtype=y.dtype)
        t = xp.sum(v * a, axis=-1) - self.b
        if self.equality:
            return _hinge(xp, xp.abs(t) - self.tol, squared)
        return _hinge(xp, t, squared)


@dataclass(frozen=True)
class Quadratic(Constraint):
    """``y'Qy + c.y <= b`` with ``Q`` symmetric positive semi-definite (balls, ellipsoids,
    energy bounds). ``Q`` is k x k over ``channels`` (None: every channel, k = C)."""

    Q: tuple[tuple[float, ...], ...]
    c: tuple[float, ...] | None
    b: float
    channels: Channels = None
    eig: Any = field(default=None, compare=False, repr=False)
    kind = "quadratic"

    def __post_init__(self) -> None:
        try:
            Q = tuple(_vector(r, f"Quadratic Q[{i}]") for i, r in enumerate(self.Q))
        except TypeError:
            raise ConfigError("Quadratic Q must be a square matrix (a list of rows)") from None
        k = len(Q)
        if k == 0 or any(len(r) != k for r in Q):
            raise ConfigError(
                f"Quadratic Q must be square, got rows of lengths {[len(r) for r in Q]}"
            )
        c = (0.0,) * k if self.c is None else _vector(self.c, "Quadratic c")
        if len(c) != k:
            raise ConfigError(f"Quadratic c has {len(c)} entries, Q is {k} x {k}")
        scale = max(1.0, max(abs(v) for r in Q for v in r))
        for i in range(k):
            for j in range(i):
                if abs(Q[i][j] - Q[j][i]) > 1e-9 * scale:
                    raise ConfigError(f"Quadratic Q must be symmetric: Q[{i}][{j}] != Q[{j}][{i}]")
        Q = tuple(tuple(0.5 * (Q[i][j] + Q[j][i]) for j in range(k)) for i in range(k))
        object.__setattr__(self, "Q", Q)
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "b", _number(self.b, "Quadratic b"))
        object.__setattr__(self, "channels", _channels(self.channels, "Quadratic"))
        if self.channels is not None and len(self.channels) != k:
            raise ConfigError(f"Quadratic: Q is {k} x {k} for {len(self.channels)} channels")
        w, V = jacobi_eigh([list(r) for r in Q])
        top = max(max(abs(v) for v in w), 1e-300)
        if min(w) < -1e-10 * top:
            raise ConfigError(f"Quadratic Q must be positive semi-definite (eigenvalue {min(w)!r})")
        w = [max(v, 0.0) if v > 1e-13 * top else 0.0 for v in w]
        object.__setattr__(self, "eig", (tuple(w), tuple(tuple(r) for r in V)))
        low = self.minimum()
        if low > self.b + 1e-12 * max(1.0, abs(self.b)):
            raise GuardrailInfeasibleError(
                f"{self.label} is empty: the smallest value of y'Qy + c.y is {low!r} > b"
            )

    @property
    def label(self) -> str:
        return f"quadratic[{_label(self.channels)}: y'Qy + c.y <= {self.b!r}]"

    def minimum(self) -> float:
        """The smallest value of ``y'Qy + c.y`` (``-inf`` when it is unbounded below)."""
        w, V = self.eig
        k = len(w)
        ct = [sum(V[i][j] * self.c[i] for i in range(k)) for j in range(k)]  # V^T c
        top = max(max(w), 1e-300)
        scale = max(1.0, max(abs(v) for v in self.c))
        out = 0.0
        for wi, ci in zip(w, ct, strict=True):
            if wi > 1e-13 * top:
                out -= ci * ci / (4.0 * wi)
            elif abs(ci) > 1e-12 * scale:
                return -math.inf
        return out

    def full(self, n_channels: int) -> tuple[list[list[float]], list[float]]:
        """``(Q, c)`` spread over the ``n_channels`` channels of a prediction."""
        chans = self.channels if self.channels is not None else tuple(range(len(self.c)))
        if self.channels is None and len(self.c) != n_channels:
            raise InputError(
                f"constraint {self.label} is {len(self.c)} x {len(self.c)}, predictions have "
                f"{n_channels} channels"
            )
        self.channel_list(n_channels)
        Q = [[0.0] * n_channels for _ in range(n_channels)]
        c = [0.0] * n_channels
        for i, ci in enumerate(chans):
            c[ci] = self.c[i]
            for j, cj in enumerate(chans):
                Q[ci][cj] = self.Q[i][j]
        return Q, c

    def violation(self, y, previous=None, *, squared=False):
        xp = namespace(y)
        v = _take(xp, y, self.channels)  # (..., k)
        Q = xp.asarray([list(r) for r in self.Q], dtype=y.dtype)
        c = xp.asarray(list(self.c), dtype=y.dtype)
        quad = xp.sum(xp.matmul(v, Q) * v, axis=-1)
        return _hinge(xp, quad + xp.sum(v * c, axis=-1) - self.b, squared)

    def to_dict(self) -> dict:
        out = super().to_dict()
        del out["eig"]
        return out


# ----------------------------------------------------------------------------- temporal
@dataclass(frozen=True)
class TemporalRule(Constraint):
    """A temporal-logic rule over the output stream (see :mod:`kizzasi_lite.logic.formula`).

    ``enforce``: True restricts each prediction so the rule is never violated (a shield, for the
    safety fragment: always, bounded response, ...); False only monitors and reports it; None
    decides by :func:`~kizzasi_lite.logic.formula.is_safety`.
    """

    formula: Any
    enforce: bool | None = None
    kind = "temporal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "formula", parse(self.formula))
        if self.enforce is not None:
            object.__setattr__(self, "enforce", _flag(self.enforce, "TemporalRule enforce"))
        if self.enforce is None:
            object.__setattr__(self, "enforce", is_safety(self.formula))

    @property
    def label(self) -> str:
        return f"rule[{to_text(self.formula)}]"

    def channel_list(self, n_channels: int) -> list[int]:
        from kizzasi_lite.logic.formula import channels

        out = sorted(channels(self.formula))
        if out and out[-1] >= n_channels:
            raise InputError(
                f"{self.label} reads channel x{out[-1]}, predictions have {n_channels} channels"
            )
        return out

    def violation(self, y, previous=None, *, squared=False):
        xp = namespace(y)
        return 0.0 * xp.sum(y, axis=-1)  # not differentiable: monitored, not trained on


# -------------------------------------------------------------------------------- helpers
KINDS: dict[str, type] = {
    cls.kind: cls
    for cls in (Range, LessThan, GreaterThan, RateLimit, Linear, Quadratic, TemporalRule)
}


def constraint_fields(kind: str) -> tuple[list[str], list[str]]:
    """``(required, optional)`` keys of a constraint of ``kind`` in its dict form (besides
    ``"type"``)."""
    cls = KINDS[kind]
    required, optional = [], []
    for f in fields(cls):
        if f.name == "eig":  # derived, never saved
            continue
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        (optional if has_default else required).append(f.name)
    return required, optional


def constraint_from_dict(data: Any) -> Constraint:
    """Inverse of ``Constraint.to_dict``: ``{"type": kind, field: value, ...}`` with the fields
    of that kind (``constraint_fields``); ``"inf"`` / ``"-inf"`` stand for infinities.

    Raises ``ConfigError`` naming what was expected and what was given.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f'a constraint is an object {{"type": ..., ...}}, got {type(data).__name__} {data!r}'
        )
    data = dict(data)
    kind = data.pop("type", None)
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(f"unknown constraint type {kind!r}; known types: {sorted(KINDS)}")
    required, optional = constraint_fields(kind)
    missing = [k for k in required if k not in data]
    unknown = sorted(str(k) for k in data if k not in required and k not in optional)
    if missing or unknown:
        problem = f"missing {missing}" if missing else ""
        problem += ("; " if missing and unknown else "") + (f"unknown {unknown}" if unknown else "")
        raise ConfigError(
            f"a {kind!r} constraint has the keys {required} (required) and {optional} "
            f"(optional); {problem}"
        )
    try:
        return KINDS[kind](**{k: _decode(v) for k, v in data.items()})
    except (TypeError, ValueError) as exc:
        if isinstance(exc, KizzasiError):
            raise
        raise ConfigError(f"a {kind!r} constraint: {exc}") from None


class BoundType:
    """Per-channel bounds for :meth:`ConstraintBuilder.bound`: ``BoundType.Range(lo, hi)``,
    ``BoundType.LessThan(v)``, ``BoundType.GreaterThan(v)``, ``BoundType.Equal(v, tol)``."""

    @staticmethod
    def Range(lo: float, hi: float) -> Range:  # noqa: N802 (mirrors the Rust enum variant)
        return Range(lo, hi)

    @staticmethod
    def LessThan(value: float) -> LessThan:  # noqa: N802
        return LessThan(value)

    @staticmethod
    def GreaterThan(value: float) -> GreaterThan:  # noqa: N802
        return GreaterThan(value)

    @staticmethod
    def Equal(value: float, tol: float = 0.0) -> Range:  # noqa: N802
        return Range(value - tol, value + tol)


def as_channels(value: Any) -> Channels:
    """Normalise a channel argument (int, sequence of ints or None)."""
    return _channels(value, "channel")


__all__ = [
    "BoundType",
    "Constraint",
    "GreaterThan",
    "LessThan",
    "Linear",
    "Quadratic",
    "Range",
    "RateLimit",
    "TemporalRule",
    "constraint_fields",
    "constraint_from_dict",
]
