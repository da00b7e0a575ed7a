"""Guardrails: named groups of constraints, a prioritised set, enforcement by projection.

    rails = GuardrailSet(policy="raise")
    rails.add(ConstraintBuilder().name("limits")
              .bound(0, BoundType.Range(-1.0, 1.0)).bound(1, BoundType.LessThan(2.0))
              .rate_limit(0.1).linear([1.0, 1.0], 1.5).build(), priority=10)
    rails.add(TemporalRule("G(x1 > 0.9 -> F[0,5] x1 < 0.5)"))
    y_safe, report = rails.enforce(y, previous=last_output)

``enforce`` returns the Euclidean projection of every stream of ``y`` (B, C) onto the set of
points that satisfy every active constraint (see :mod:`kizzasi_lite.logic.projection`): rate
limits are active when ``previous`` is given, enforced temporal rules restrict the current step
(:mod:`kizzasi_lite.logic.shield`) using the history the set keeps, other rules are monitored.
The result satisfies every constraint to ``tolerance`` (1e-9), relative: a bound ``B`` is met
to ``tolerance * max(1, |B|)``, ``a . y <= b`` to ``tolerance * max(1, |b|, Σ|a_c y_c|)``,
``y'Qy + c.y <= b`` to ``tolerance * max(1, |b|, |y'Qy| + |c.y|)``
(:func:`kizzasi_lite.logic.projection.violation`). That holds for the values returned, in their
own dtype: float32 results are computed in float64, rounded towards the feasible set and
checked after rounding. A stream that already satisfies the constraints is returned unchanged.
When the constraints have no common point, or no point of the output dtype (a set narrower than
float32 resolution), the policy decides: ``"raise"`` a :class:`GuardrailInfeasibleError` naming
the constraints in conflict, or ``"prioritize"``: leave out the lowest-priority constraint of
the conflict (the latest added among equals) until the rest is feasible, and report what was
left out.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from typing import Any

from kizzasi_lite.errors import ConfigError, InputError, KizzasiError
from kizzasi_lite.logic.compiled import Compiled, Entry, compile_entries
from kizzasi_lite.logic.constraints import (
    Constraint,
    GreaterThan,
    LessThan,
    Linear,
    Quadratic,
    Range,
    RateLimit,
    TemporalRule,
    constraint_from_dict,
)

POLICIES = ("raise", "prioritize")
FORMAT_VERSION = 1
_TOP_KEYS = ("format", "version", "policy", "tolerance", "guardrails")


# ------------------------------------------------------------------------------ guardrails
@dataclass(frozen=True)
class Guardrail:
    """A named group of constraints (what :class:`ConstraintBuilder` builds)."""

    name: str
    constraints: tuple[Constraint, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ConfigError(
                f"a guardrail name is a non-empty string without '/', got {self.name!r}"
            )
        items = tuple(self.constraints)
        for c in items:
            if not isinstance(c, Constraint):
                raise ConfigError(f"guardrail {self.name!r}: {c!r} is not a constraint")
        object.__setattr__(self, "constraints", items)

    def to_dict(self) -> dict:
        return {"name": self.name, "constraints": [c.to_dict() for c in self.constraints]}

    @classmethod
    def from_dict(cls, data: Any) -> Guardrail:
        """Inverse of :meth:`to_dict`: ``{"name": str, "constraints": [constraint, ...]}``
        (the constraint objects of :meth:`GuardrailSet.from_json`); ConfigError otherwise."""
        _keys(data, "a guardrail", ("name", "constraints"), ("priority",))
        items = data["constraints"]
        if not isinstance(items, list | tuple):
            raise ConfigError(
                f"guardrail {data['name']!r}: 'constraints' is a list of constraint objects, "
                f"got {type(items).__name__} {items!r}"
            )
        out = []
        for j, c in enumerate(items):
            try:
                out.append(constraint_from_dict(c))
            except KizzasiError as exc:
                raise type(exc)(f"guardrail {data['name']!r}, constraint {j}: {exc}") from None
        return cls(data["name"], tuple(out))


def _keys(data: Any, what: str, required: tuple, optional: tuple = ()) -> None:
    """Check that ``data`` is a dict with every key of ``required`` and no key outside
    ``required + optional``; ConfigError naming what was expected and what was given."""
    expected = f"{what} is a JSON object with the keys {list(required)}" + (
        f" (optional: {list(optional)})" if optional else ""
    )
    if not isinstance(data, dict):
        shown = repr(data) if len(repr(data)) <= 60 else repr(data)[:57] + "..."
        raise ConfigError(f"{expected}, got {type(data).__name__} {shown}")
    missing = [k for k in required if k not in data]
    unknown = sorted(str(k) for k in data if k not in required and k not in optional)
    if missing or unknown:
        given = ", ".join(repr(str(k)) for k in data) or "none"
        parts = [f"missing {missing}"] * bool(missing) + [f"unknown {unknown}"] * bool(unknown)
        problem = "; ".join(parts)
        raise ConfigError(f"{expected}; {problem} (keys given: {given})")


class ConstraintBuilder:
    """Fluent construction of a :class:`Guardrail`; every bound given is kept.

    ``ConstraintBuilder().name("limits").bound(0, BoundType.Range(-1, 1)).bound(1, ...)
    .rate_limit(0.1).linear([1, 1], 1.5).quadratic(Q, c, b).rule("G(x0 <= 1)").build()``
    """

    def __init__(self) -> None:
        self._name = "guardrail"
        self._items: list[Constraint] = []

    def name(self, name: str) -> ConstraintBuilder:
        self._name = name
        return self

    def bound(self, channel: int, bound: Range | LessThan | GreaterThan) -> ConstraintBuilder:
        """A per-channel bound (``BoundType.Range(lo, hi)``, ``.LessThan(v)``, ...)."""
        if not isinstance(bound, Range | LessThan | GreaterThan):
            raise ConfigError(
                f"bound() takes a BoundType (Range/LessThan/GreaterThan), got {bound!r}"
            )
        return self.add(replace(bound, channel=channel))

    def range(self, channel: Any, lo: float, hi: float) -> ConstraintBuilder:
        return self.add(Range(lo, hi, channel))

    def rate_limit(self, delta: float, channel: Any = None) -> ConstraintBuilder:
        return self.add(RateLimit(delta, channel))

    def linear(self, a, b, *, equality=False, tol=0.0, channels=None) -> ConstraintBuilder:
        return self.add(Linear(a, b, equality, tol, channels))

    def quadratic(self, Q, c, b, *, channels=None) -> ConstraintBuilder:
        return self.add(Quadratic(Q, c, b, channels))

    def rule(self, formula: Any, *, enforce: bool | None = None) -> ConstraintBuilder:
        return self.add(TemporalRule(formula, enforce))

    def add(self, constraint: Constraint) -> ConstraintBuilder:
        if not isinstance(constraint, Constraint):
            raise ConfigError(f"{constraint!r} is not a constraint")
        self._items.append(constraint)
        return self

    def build(self) -> Guardrail:
        """The guardrail; raises GuardrailInfeasibleError if its constraints alone conflict."""
        g = Guardrail(self._name, tuple(self._items))
        GuardrailSet([g])  # the static feasibility check
        return g


# --------------------------------------------------------------------------------- reports
@dataclass
class EnforcementReport:
    """What one ``enforce`` call did, per stream ``b``.

    ``status[b]``: ``"feasible"`` (unchanged), ``"projected"``, ``"uncertified"`` (feasible,
    solver budget spent before the optimality certificate) or ``"prioritized"`` (some
    constraints were left out, see ``unsatisfied``). ``active[b]``: the constraints binding at
    the returned value (those that moved the prediction). ``distance[b]``: ``||y_safe - y||``.
    ``error_bound[b]``: certified bound on the distance to the exact projection.
    ``rules``: verdict of every temporal rule per stream after this step.
    """

    status: list[str]
    active: list[list[str]]
    distance: list[float]
    error_bound: list[float]
    unsatisfied: list[list[str]] = field(default_factory=list)
    rules: dict[str, list[str]] = field(default_factory=dict)

    @property
    def interventions(self) -> int:
        """How many streams were moved."""
        return sum(1 for s in self.status if s != "feasible")

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "active": self.active,
            "distance": self.distance,
            "error_bound": self.error_bound,
            "unsatisfied": self.unsatisfied,
            "rules": self.rules,
        }


# -------------------------------------------------------------------------------- the set
class GuardrailSet:
    """Guardrails with priorities, enforced together on every prediction (module docstring).

    ``policy``: ``"raise"`` or ``"prioritize"``. ``tolerance``: the relative violation a
    returned value may have, in its own dtype (and below which a prediction counts as
    satisfying a constraint); see the module docstring for what "relative" means.
    ``max_iter``: the solver's iteration budget per projection.
    ``counters[name]``: how many times each constraint was active (moved a stream).
    """

    def __init__(
        self,
        guardrails: Any = (),
        *,
        policy: str = "raise",
        tolerance: float = 1e-9,
        max_iter: int = 4000,
    ) -> None:
        if not isinstance(policy, str) or policy not in POLICIES:
            raise ConfigError(f"policy must be one of {POLICIES}, got {policy!r}")
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, int | float)
            or not 0 < tolerance < 1e-3
        ):
            raise ConfigError(f"tolerance must be a number in (0, 1e-3), got {tolerance!r}")
        if isinstance(max_iter, bool) or not hasattr(max_iter, "__index__") or max_iter < 1:
            raise ConfigError(f"max_iter must be a whole number >= 1, got {max_iter!r}")
        self.policy = policy
        self.tolerance = float(tolerance)
        self.max_iter = int(max_iter)
        self.entries: list[Entry] = []
        self.groups: list[tuple[Guardrail, int]] = []
        self.counters: dict[str, int] = {}
        self.static_conflicts: list[str] = []
        self._compiled: dict[int, Compiled] = {}
        self._streams: dict[int, list] | None = None
        for g in guardrails if not isinstance(guardrails, Guardrail) else [guardrails]:
            if isinstance(g, tuple) and len(g) == 2 and isinstance(g[1], int):
                self.add(g[0], priority=g[1])
            else:
                self.add(g)

    # ---------------------------------------------------------------- building
    def add(self, item: Any, *, priority: int = 0, name: str | None = None) -> GuardrailSet:
        """Add a :class:`Guardrail`, a constraint, or a list of constraints, with a priority
        (higher wins under the "prioritize" policy). Returns the set, for chaining.

        Raises ``GuardrailInfeasibleError`` when the static constraints (everything but rate
        limits and temporal rules) are now provably empty and the policy is "raise".
        """
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigError(f"priority must be an int, got {priority!r}")
        if isinstance(item, Guardrail):
            g = item if name is None else Guardrail(name, item.constraints)
        elif isinstance(item, Constraint):
            g = Guardrail(name or f"{item.kind}_{len(self.groups)}", (item,))
        elif isinstance(item, list | tuple):
            g = Guardrail(name or f"guardrail_{len(self.groups)}", tuple(item))
        else:
            raise ConfigError(f"add() takes a Guardrail or constraints, got {item!r}")
        if any(g.name == h.name for h, _ in self.groups):
            raise ConfigError(f"a guardrail named {g.name!r} is already in the set")
        new = []
        seen: dict[str, int] = {}
        for c in g.constraints:
            base = f"{g.name}/{c.label}"
            seen[base] = seen.get(base, 0) + 1
            label = base if seen[base] == 1 else f"{base}#{seen[base]}"
            new.append(Entry(label, c, priority, len(self.entries) + len(new)))
        old = (list(self.entries), list(self.groups))
        self.entries.extend(new)
        self.groups.append((g, priority))
        self._changed()
        try:
            self._check_static()
        except Exception:
            self.entries, self.groups = old
            self._changed()
            raise
        for e in new:
            self.counters.setdefault(e.name, 0)
        return self

    def remove(self, name: str) -> GuardrailSet:
        """Remove the guardrail called ``name``."""
        keep = [(g, p) for g, p in self.groups if g.name != name]
        if len(keep) == len(self.groups):
            raise ConfigError(f"no guardrail named {name!r}")
        groups = keep
        self.entries, self.groups = [], []
        for g, p in groups:
            self.add(g, priority=p)
        return self

    def _changed(self) -> None:
        self._compiled.clear()
        self._streams = None

    @property
    def names(self) -> list[str]:
        """The full name of every constraint (``guardrail/label``), in the order added."""
        return [e.name for e in self.entries]

    def check_channels(self, n_channels: int) -> None:
        """Check that every constraint fits predictions of ``n_channels`` channels (call it when
        the set is attached to a model). Raises ConfigError naming the constraint and both
        sizes: a channel index >= ``n_channels``, or a ``Linear``/``Quadratic`` without
        ``channels`` whose coefficients are not one per channel."""
        if isinstance(n_channels, bool) or not hasattr(n_channels, "__index__") or n_channels < 1:
            raise ConfigError(f"n_channels must be a whole number >= 1, got {n_channels!r}")
        try:
            self.compiled(int(n_channels))
        except InputError as exc:
            raise ConfigError(
                f"the guardrails do not fit predictions of {int(n_channels)} channel(s): {exc}"
            ) from None

    def compiled(self, C: int) -> Compiled:
        if C not in self._compiled:
            self._compiled[C] = compile_entries(self.entries, C)
        return self._compiled[C]

    def _needed_channels(self) -> int:
        need = 1
        for e in self.entries:
            c = e.constraint
            chans = getattr(c, "channel", None) or getattr(c, "channels", None)
            if chans:
                need = max(need, max(chans) + 1)
            elif isinstance(c, Linear):
                need = max(need, len(c.a))
            elif isinstance(c, Quadratic):
                need = max(need, len(c.c))
            elif isinstance(c, TemporalRule):
                need = max(need, max(c.channel_list(10**9), default=0) + 1)
        return need

    def _check_static(self) -> None:
        """Project the origin onto the static constraints (float64, default backend)."""
        from kizzasi_lite.logic.enforce import static_conflicts

        self.static_conflicts = static_conflicts(self, self._needed_channels())
        if self.static_conflicts and self.policy == "raise":
            from kizzasi_lite.errors import GuardrailInfeasibleError

            raise GuardrailInfeasibleError(
                "the constraints have no common point; in conflict: "
                + ", ".join(self.static_conflicts)
            )

    # ---------------------------------------------------------------- enforcing
    def enforce(self, y: Any, previous: Any = None, *, advance: bool = True):
        """Project ``y`` (B, C) or (C,) onto the constraints; returns ``(y_safe, report)``.

        ``y``: an array of real floats (nested lists of numbers are converted to an array of
        the backend of ``previous``, or of the default backend). ``previous``: the last
        emitted outputs, same shape (None: rate limits inactive).
        ``advance``: feed the result to the temporal rules' monitors (one step of the stream).
        ``y_safe`` has the backend, shape and dtype of ``y``.
        """
        from kizzasi_lite.logic.enforce import enforce

        return enforce(self, y, previous, advance=advance)

    def reset(self) -> None:
        """Forget the output history of the temporal rules (start new streams)."""
        self._streams = None

    def fork(self, streams: int | None = None) -> GuardrailSet:
        """A set with the same constraints that starts from this one's rule history and
        counters, and leaves them as they are: a roll-out or a forecast is guarded on a fork,
        and a sequence is, until it has been guarded whole (:meth:`adopt`). ``streams``: that
        many copies of a one-stream history (sampled trajectories of one stream)."""
        fork = copy.copy(self)  # shares the entries and the compiled problems
        fork.counters = dict(self.counters)
        live = self._streams
        if live is not None and streams is not None:
            if any(len(ms) != 1 for ms in live.values()):
                raise InputError(
                    f"the guardrails follow {len(next(iter(live.values())))} streams; a fork "
                    f"into {streams} copies needs a history of one stream"
                )
            fork._streams = {
                i: [copy.deepcopy(ms[0]) for _ in range(streams)] for i, ms in live.items()
            }
        else:
            fork._streams = None if live is None else copy.deepcopy(live)
        return fork

    def adopt(self, fork: GuardrailSet) -> None:
        """Take over the rule history and counters of ``fork`` (:meth:`fork`)."""
        self._streams, self.counters = fork._streams, fork.counters

    def observe(self, y: Any) -> dict[str, list[str]]:
        """Feed outputs ``y`` (B, C) or (C,) to the temporal rules without enforcing anything
        (a history produced elsewhere, or a warm-up); returns each rule's verdicts."""
        from kizzasi_lite.logic.enforce import observe

        return observe(self, y)

    def violation(self, y: Any, previous: Any = None, *, squared: bool = False) -> Any:
        """Sum of every constraint's differentiable violation: ``y`` (..., C) -> (...,)."""
        total = None
        for e in self.entries:
            v = e.constraint.violation(y, previous, squared=squared)
            total = v if total is None else total + v
        if total is None:
            from kizzasi_lite.backends import namespace

            return 0.0 * namespace(y).sum(y, axis=-1)
        return total

    # ---------------------------------------------------------------- saving
    def to_dict(self) -> dict:
        """The set as a JSON-ready dict (the format is described in :meth:`from_json`)."""
        return {
            "format": "kizzasi-guardrails",
            "version": FORMAT_VERSION,
            "policy": self.policy,
            "tolerance": self.tolerance,
            "max_iter": self.max_iter,
            "guardrails": [{"priority": p, **g.to_dict()} for g, p in self.groups],
        }

    @classmethod
    def from_dict(cls, data: Any) -> GuardrailSet:
        """Inverse of :meth:`to_dict`; the whole document is checked (format in
        :meth:`from_json`). Raises ConfigError naming what was expected and what was given
        (GuardrailInfeasibleError for constraints that are empty or conflict)."""
        if isinstance(data, dict) and data.get("format") != "kizzasi-guardrails":
            raise ConfigError(
                "not a kizzasi guardrails file: 'format' must be 'kizzasi-guardrails', "
                f"got {data.get('format')!r}"
            )
        if isinstance(data, dict) and "version" in data:
            version = data["version"]
            if isinstance(version, bool) or version != FORMAT_VERSION:
                raise ConfigError(
                    f"guardrails format version {version!r} is not supported "
                    f"(this version reads {FORMAT_VERSION})"
                )
        _keys(data, "a guardrails file", _TOP_KEYS, ("max_iter",))
        groups = data["guardrails"]
        if not isinstance(groups, list):
            raise ConfigError(
                "'guardrails' is a list of guardrail objects "
                f"{{'name', 'priority', 'constraints'}}, got {type(groups).__name__} {groups!r}"
            )
        out = cls(
            policy=data["policy"], tolerance=data["tolerance"], max_iter=data.get("max_iter", 4000)
        )
        for i, g in enumerate(groups):
            _keys(g, f"guardrails[{i}]", ("name", "priority", "constraints"))
            priority = g["priority"]
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise ConfigError(
                    f"guardrails[{i}] 'priority' must be an integer, got {priority!r}"
                )
            out.add(Guardrail.from_dict(g), priority=priority)
        return out

    def to_json(self, **kwargs: Any) -> str:
        """The set as JSON text (keyword arguments go to ``json.dumps``; indent 2 by default).

        The format, which :meth:`from_json` reads back exactly, is described there.
        """
        return json.dumps(self.to_dict(), indent=kwargs.pop("indent", 2), allow_nan=False, **kwargs)

    @classmethod
    def from_json(cls, text: str) -> GuardrailSet:
        """A set from the JSON text :meth:`to_json` writes (``guardrails.json``).

        The document is one object with exactly these keys::

            format      "kizzasi-guardrails"
            version     1
            policy      "raise" or "prioritize"
            tolerance   a number in (0, 1e-3), e.g. 1e-9 (the relative violation allowed)
            max_iter    optional: the solver's iterations per projection, a whole number >= 1
                        (4000 when left out)
            guardrails  a list, in the order they are added, of objects with exactly the keys
                        name (non-empty string without "/", unique), priority (an integer;
                        higher wins under "prioritize") and constraints (a list of objects)

        A constraint object has ``"type"`` and the arguments of its class, by name
        (optional ones may be left out; ``channel``/``channels``: an index, a list of
        indices, or null for every channel; infinite bounds are the strings "inf", "-inf")::

            {"type": "range", "lo": L, "hi": H, "channel": null}
            {"type": "less_than", "value": V, "channel": null}
            {"type": "greater_than", "value": V, "channel": null}
            {"type": "rate_limit", "delta": D, "channel": null}
            {"type": "linear", "a": [...], "b": B, "equality": false, "tol": 0.0,
             "channels": null}
            {"type": "quadratic", "Q": [[...], ...], "c": [...] or null, "b": B,
             "channels": null}
            {"type": "temporal", "formula": "G(x0 <= 1.0)", "enforce": null}

        For example, channel 0 kept in [-1, 1] and moving at most 0.1 per step::

            {"format": "kizzasi-guardrails", "version": 1, "policy": "raise",
             "tolerance": 1e-9,
             "guardrails": [{"name": "limits", "priority": 0, "constraints": [
                 {"type": "range", "lo": -1.0, "hi": 1.0, "channel": 0},
                 {"type": "rate_limit", "delta": 0.1, "channel": 0}]}]}

        Raises ConfigError (text that is not JSON, a missing or unknown key, a value of the
        wrong kind: the message says what was expected and what was given), and
        GuardrailInfeasibleError for constraints that are empty or conflict under "raise".
        """
        if not isinstance(text, str | bytes | bytearray):
            raise ConfigError(f"from_json takes JSON text, got {type(text).__name__}")
        try:
            data = json.loads(text)
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
            raise ConfigError(f"guardrails: expected JSON text ({exc})") from None
        return cls.from_dict(data)

    def save(self, path: Any) -> None:
        """Write the set as JSON (``guardrails.json`` next to a model)."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: Any) -> GuardrailSet:
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GuardrailSet) and self.to_dict() == other.to_dict()

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"GuardrailSet({len(self.groups)} guardrails, {len(self.entries)} constraints, policy={self.policy!r})"


def as_guardrail_set(value: Any) -> GuardrailSet:
    """A GuardrailSet from a set, a guardrail, a constraint or a list of them."""
    if isinstance(value, GuardrailSet):
        return value
    if value is None:
        return GuardrailSet()
    if isinstance(value, Guardrail | Constraint):
        return GuardrailSet().add(value)
    if isinstance(value, list | tuple):
        out = GuardrailSet()
        for v in value:
            out.add(v)
        return out
    raise InputError(f"cannot make guardrails from {value!r}")


__all__ = [
    "POLICIES",
    "ConstraintBuilder",
    "EnforcementReport",
    "Guardrail",
    "GuardrailSet",
    "as_guardrail_set",
]
