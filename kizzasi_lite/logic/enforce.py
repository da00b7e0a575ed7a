"""``GuardrailSet.enforce``: boxes, rate limits and temporal shields in, one projection out.

Per call: (1) the static box, tightened by the rate limits around ``previous``; (2) for every
enforced temporal rule, the union of boxes that keeps it from being violated now (a few
alternatives at most; their combinations are solved side by side and the nearest feasible one
wins); (3) the projection (:func:`kizzasi_lite.logic.projection.project`) in float64;
(4) results of a float32 call are re-solved against constraints moved inward by a few float32
ulps (more if rounding still crosses a bound), rounded, and checked: a stream whose rounded
answer violates a constraint by more than the tolerance has no float32 point and counts as
infeasible; (5) streams without a feasible point are handled by the policy one at a time;
(6) the report, the counters, and one step of every rule monitor.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from kizzasi_lite.backends import backend_name, dtype_name, get_namespace, namespace
from kizzasi_lite.errors import GuardrailInfeasibleError, InputError
from kizzasi_lite.logic.compiled import Compiled, arrays, problem
from kizzasi_lite.logic.formula import Const
from kizzasi_lite.logic.guardrails import EnforcementReport, GuardrailSet
from kizzasi_lite.logic.monitor import StreamMonitor, rows_of
from kizzasi_lite.logic.projection import Solution, host_list, project
from kizzasi_lite.logic.rounding import EPS, project_checked
from kizzasi_lite.logic.shield import Box, Reach, boxes, combine, not_false


# ------------------------------------------------------------------------------ helpers
def _work_dtype(xp: Any) -> Any:
    """float64 where the backend computes in it (not MLX on a GPU), else float32."""
    if backend_name(xp) == "mlx":
        with contextlib.suppress(Exception):  # a CPU-only build has no default_device
            if "gpu" in str(xp.default_device()).lower():
                return xp.float32
    return xp.float64


def _is_array(value: Any) -> bool:
    try:
        namespace(value)
    except TypeError:
        return False
    return True


def _inputs(y: Any, previous: Any) -> tuple[Any, Any, Any]:
    """``(xp, y, previous)``: the arrays' namespace, and array-likes (nested lists of numbers)
    converted to arrays of it (floats; the default backend when neither is an array)."""
    given = [v for v in (y, previous) if v is not None and _is_array(v)]
    try:
        xp = namespace(*given) if given else get_namespace()
    except TypeError as exc:
        raise InputError(
            f"the prediction and previous must be arrays of one backend, got "
            f"{type(y).__name__} and {type(previous).__name__} ({exc})"
        ) from None
    return xp, _as_array(xp, y, "the prediction"), _as_array(xp, previous, "previous")


def _as_array(xp: Any, value: Any, what: str) -> Any:
    if value is None or _is_array(value):
        return value
    expected = f"{what} must be an array (or nested lists of numbers) of shape (C,) or (B, C)"
    if isinstance(value, str | bytes | dict) or not hasattr(value, "__len__"):
        raise InputError(f"{expected}, got {type(value).__name__} {value!r:.60}")
    try:
        out = xp.asarray(value)
        if xp.isdtype(out.dtype, ("bool", "integral")):
            out = xp.astype(out, xp.float64)
    except Exception as exc:  # ragged lists, strings inside: backends raise different errors
        raise InputError(f"{expected}, got {type(value).__name__} {value!r:.60} ({exc})") from None
    return out


def _check(xp: Any, y: Any, what: str) -> None:
    if dtype_name(y.dtype) not in ("float16", "bfloat16", "float32", "float64", "float128"):
        raise InputError(f"{what} must be a real floating-point array, got dtype {y.dtype}")
    if not bool(xp.all(xp.isfinite(y))):
        raise InputError(f"{what} has NaN or infinite values")


def _rows_host(x: Any) -> list[list[float]]:
    return rows_of(x)


def _monitors(rails: GuardrailSet, comp: Compiled, B: int) -> dict[int, list[StreamMonitor]]:
    if rails._streams is not None:
        n = len(next(iter(rails._streams.values()), [None] * B))
        if n != B:
            raise InputError(
                f"the guardrails follow {n} streams (temporal rules), got {B}; call reset() first"
            )
        return rails._streams
    rails._streams = {
        i: [StreamMonitor(rails.entries[i].constraint.formula) for _ in range(B)]
        for i in comp.rules
    }
    return rails._streams


def _rule_boxes(m: StreamMonitor, rates: Reach, C: int) -> list[Box]:
    """The boxes that keep a rule from failing at this step; a rule already violated (its
    monitor holds ``false``: a conflict was resolved against it) restricts nothing any more."""
    if m.truth == Const(False):
        return [Box(C)]
    return boxes(not_false(m.truth, m.past, rates), C)


def _box_bounds(box: Box, margin: float) -> tuple[list[float], list[float]]:
    """A box's bounds with its open ends moved inward by ``margin`` (relative)."""
    lo = [
        v + margin * max(1.0, abs(v)) if s else v
        for v, s in zip(box.lo, box.lo_strict, strict=True)
    ]
    hi = [
        v - margin * max(1.0, abs(v)) if s else v
        for v, s in zip(box.hi, box.hi_strict, strict=True)
    ]
    return lo, hi


# ------------------------------------------------------------------------- core solving
def _solve(rails, comp, xp, work, y, prev, alts, skip, margin, out_dtype=None):
    """Project every stream; ``alts[b]`` the alternatives of stream b (or None), ``skip[b]`` the
    entries left out for it (or None for none). Returns the solution of the nearest feasible
    alternative of each stream and the index of that alternative. ``out_dtype``: the dtype the
    answer is returned in (None: ``work``); each answer is checked after rounding to it
    (:func:`kizzasi_lite.logic.rounding.project_checked`)."""
    B, C = y.shape
    arr = arrays(comp, xp, work)
    if skip is None:
        L = xp.broadcast_to(arr["L"][None, :], (B, C))
        U = xp.broadcast_to(arr["U"][None, :], (B, C))
        if prev is not None and comp.rates:
            L = xp.maximum(L, prev - arr["rate"])
            U = xp.minimum(U, prev + arr["rate"])
        drop: set[int] = set()
    else:  # one stream with some entries left out
        drop = skip
        lo, hi = comp.static_box(drop)
        rate = comp.rate_vector(drop)
        if prev is not None:
            p = _rows_host(prev)[0]
            lo = [max(a, v - d) for a, v, d in zip(lo, p, rate, strict=True)]
            hi = [min(a, v + d) for a, v, d in zip(hi, p, rate, strict=True)]
        L, U = xp.asarray([lo], dtype=work), xp.asarray([hi], dtype=work)
    count = 1 if alts is None else max(1, max(len(a) for a in alts))
    best: Solution | None = None
    choice = [0] * B
    for k in range(count):
        Lk, Uk = L, U
        if alts is not None:
            los, his = [], []
            for b in range(B):
                if not alts[b]:  # the rule cannot hold now: an empty box
                    los.append([math.inf] * C)
                    his.append([-math.inf] * C)
                    continue
                lo, hi = _box_bounds(alts[b][min(k, len(alts[b]) - 1)][0], margin)
                los.append(lo)
                his.append(hi)
            Lk = xp.maximum(L, xp.asarray(los, dtype=work))
            Uk = xp.minimum(U, xp.asarray(his, dtype=work))
        p = problem(comp, xp, work, B, L=Lk, U=Uk, skip=drop)
        out = work if out_dtype is None else out_dtype
        sol = project_checked(rails, xp, work, y, p, out)
        if best is None:
            best = sol
            continue
        best, choice = _nearest(xp, y, best, sol, choice, k)
    return best, choice


def _nearest(xp, y, a: Solution, b: Solution, choice: list[int], k: int):
    """Per stream, the feasible one of two solutions that moved the prediction least."""
    da = xp.sum((a.x - y) ** 2, axis=-1)
    db = xp.sum((b.x - y) ** 2, axis=-1)
    bad_a = [s == "infeasible" for s in a.status]
    bad_b = [s == "infeasible" for s in b.status]
    pick = [
        (not bb) and (ba or float(db[i]) < float(da[i]))
        for i, (ba, bb) in enumerate(zip(bad_a, bad_b, strict=True))
    ]
    mask = xp.asarray(pick)[:, None]
    out = Solution(
        x=xp.where(mask, b.x, a.x),
        status=[b.status[i] if pick[i] else a.status[i] for i in range(len(pick))],
        error_bound=[b.error_bound[i] if pick[i] else a.error_bound[i] for i in range(len(pick))],
        lam=xp.where(mask, b.lam, a.lam),
        mu=xp.where(mask, b.mu, a.mu),
        nu=xp.where(mask, b.nu, a.nu),
        conflicts=[b.conflicts[i] if pick[i] else a.conflicts[i] for i in range(len(pick))],
        iterations=max(a.iterations, b.iterations),
    )
    return out, [k if pick[i] else choice[i] for i in range(len(pick))]


# ------------------------------------------------------------------------- naming things
def _sources(rails, comp, c, side, prev_row, rule_boxes, skip) -> list[int]:
    """Entries that set the binding bound of channel ``c`` (side +1: upper, -1: lower)."""
    boxes, rates = comp.by_channel()
    up = side > 0
    cands = [(hi if up else lo, e) for e, lo, hi in boxes[c] if e not in skip]
    if prev_row is not None:
        v = prev_row[c]
        cands.extend((v + d if up else v - d, e) for e, d in rates[c] if e not in skip)
    for e, box in rule_boxes.items():
        cands.append((box.hi[c] if up else box.lo[c], e))
    cands = [(v, e) for v, e in cands if math.isfinite(v)]
    if not cands:
        return []
    best = min(cands)[0] if up else max(cands)[0]
    tol = 1e-12 * max(1.0, abs(best))
    return [e for v, e in cands if abs(v - best) <= tol]


def _active(comp, nu, lam, mu, prev_row, rule_boxes, skip, rails) -> list[int]:
    """Entries with a nonzero multiplier at one stream's answer (they moved it); ``nu``,
    ``lam``, ``mu`` are that stream's multipliers as Python lists."""
    out: list[int] = []
    for c, v in enumerate(nu):
        if v != 0.0:
            out.extend(_sources(rails, comp, c, 1 if v > 0 else -1, prev_row, rule_boxes, skip))
    out.extend(e for (e, *_rest), v in zip(comp.rows, lam, strict=True) if v != 0.0)
    out.extend(e for (e, *_rest), v in zip(comp.quads, mu, strict=True) if v > 0.0)
    return sorted(set(out))


def _conflict(rails, comp, sol, b, prev_row, rule_boxes, skip, per_rule) -> list[int]:
    """Entries in conflict for an infeasible stream ``b``."""
    conf = sol.conflicts[b] or {"box": [], "rows": [], "quads": []}
    out: list[int] = []
    if per_rule and not rule_boxes:  # the rules cannot all hold now: they are the conflict,
        empty = [i for i, alts in per_rule.items() if not alts and i not in skip]
        out = empty or [i for i in per_rule if i not in skip]
        boxes_, _ = comp.by_channel()  # with the static bounds their look-ahead relied on
        for i in out:
            for c in rails.entries[i].constraint.channel_list(comp.C):
                out = out + [e for e, lo, hi in boxes_[c] if e not in skip]
        return sorted(set(out))
    for c, side in conf["box"]:
        out.extend(_sources(rails, comp, c, side, prev_row, rule_boxes, skip))
    out.extend(comp.rows[k][0] for k in conf["rows"])
    out.extend(comp.quads[j][0] for j in conf["quads"])
    return sorted(set(out))


def _minimal(rails, comp, xp, work, y, prev, conflict: list[int], margin, out_dtype=None):
    """Shrink a conflict to an irreducible one by a deletion filter (Chinneck & Dravnieks 1991):
    drop each member whose removal leaves the rest still infeasible (in ``out_dtype``, None:
    the work dtype). Rules are kept as given."""
    if len(conflict) <= 2 or any(rails.entries[e].constraint.kind == "temporal" for e in conflict):
        return conflict
    everything = set(range(len(rails.entries)))
    keep = list(conflict)
    for e in sorted(conflict, key=lambda e: -e):
        trial = [k for k in keep if k != e]
        sol, _ = _solve(
            rails, comp, xp, work, y, prev, None, everything - set(trial), margin, out_dtype
        )
        if sol.status[0] == "infeasible":
            keep = trial
    return keep


def _message(rails, names: list[str], b: int, rounding: str | None = None) -> str:
    listed = ", ".join(names) if names else "(could not be isolated)"
    if rounding:
        return (
            f"stream {b}: no {rounding} value satisfies the guardrails to their tolerance "
            f"{rails.tolerance!r} (relative; the set they allow is narrower than {rounding} "
            f"resolution there); constraints in conflict: {listed}"
        )
    return f"stream {b}: the guardrails have no common point; constraints in conflict: {listed}"


# --------------------------------------------------------------------------------- enforce
def _combos(per_rule: dict[int, list[Box]], skip: set[int], C: int) -> list[tuple[Box, dict]]:
    combos: list[tuple[Box, dict]] = [(Box(C), {})]
    for i, alts in per_rule.items():
        if i in skip:
            continue
        nxt = []
        for box, src in combos:
            for rb in alts:
                both = combine([[box], [rb]], C)
                if both:
                    nxt.append((both[0], {**src, i: rb}))
        combos = nxt
    return combos


def enforce(rails: GuardrailSet, y: Any, previous: Any, *, advance: bool = True):
    """See :meth:`GuardrailSet.enforce`."""
    xp, y, previous = _inputs(y, previous)
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise InputError(f"predictions are (C,) or (B, C) with C >= 1, got shape {tuple(y.shape)}")
    _check(xp, y, "the prediction")
    single = y.ndim == 1
    Y = y[None, :] if single else y
    P = None
    if previous is not None:
        if tuple(previous.shape) != tuple(y.shape):
            raise InputError(
                f"previous has shape {tuple(previous.shape)}, the prediction {tuple(y.shape)}"
            )
        _check(xp, previous, "previous")
        P = previous[None, :] if single else previous
    B, C = Y.shape
    comp = rails.compiled(C)
    work = _work_dtype(xp)
    y64 = xp.astype(Y, work)
    p64 = None if P is None else xp.astype(P, work)
    prev_rows = None if P is None else _rows_host(p64)
    monitors = _monitors(rails, comp, B)
    rates = Reach(comp.rate_vector() if P is not None else [math.inf] * C, *comp.static_box())
    enforced = [i for i in comp.rules if rails.entries[i].constraint.enforce]
    per_rule: list[dict[int, list[Box]]] | None = None
    alts = None
    if enforced:
        per_rule = [{i: _rule_boxes(monitors[i][b], rates, C) for i in enforced} for b in range(B)]
        alts = [_combos(per_rule[b], set(), C) for b in range(B)]
    margin = 8.0 * EPS.get(dtype_name(Y.dtype), 1e-7)
    sol, choice = _solve(rails, comp, xp, work, y64, p64, alts, None, margin, Y.dtype)
    x = sol.x
    skips: list[set[int]] = [set() for _ in range(B)]
    results = {b: (sol, b, choice[b]) for b in range(B)}
    for b in [i for i, s in enumerate(sol.status) if s == "infeasible"]:
        sub, b_choice, skip = _resolve(
            rails, comp, xp, work, y64, p64, prev_rows, per_rule, b, margin, Y.dtype,
            (sol, b, choice[b]),
        )  # fmt: skip
        skips[b] = skip
        pick = xp.asarray([i == b for i in range(B)])[:, None]
        x = xp.where(pick, xp.broadcast_to(sub.x, (B, C)), x)
        results[b] = (sub, 0, b_choice)
    out = xp.astype(x, Y.dtype)
    report = _report(rails, comp, xp, work, y64, out, results, alts, per_rule, prev_rows, skips)
    if advance:
        rows = _rows_host(out)
        for i in comp.rules:
            for b, m in enumerate(monitors[i]):
                m.step(rows[b])
    report.rules = {
        rails.entries[i].name: [m.result().verdict.value for m in monitors[i]] for i in comp.rules
    }
    for names in report.active:
        for n in names:
            rails.counters[n] = rails.counters.get(n, 0) + 1
    return (out[0, :] if single else out), report


def _resolve(rails, comp, xp, work, y64, p64, prev_rows, per_rule, b, margin, out_dtype, first):
    """One infeasible stream under the policy: raise, or leave out the lowest-priority
    constraint of each conflict until the rest is feasible. ``first``: ``(sol, row, choice)``,
    the stream's infeasible solution in the batch, whose conflict is read without solving the
    same problem again."""
    y_b = y64[b : b + 1, :]
    p_b = None if p64 is None else p64[b : b + 1, :]
    prev_row = None if prev_rows is None else prev_rows[b]
    skip: set[int] = set()
    sol, row, k = first
    for _ in range(len(rails.entries) + 1):
        alts = None if per_rule is None else _combos(per_rule[b], skip, comp.C)
        if skip:  # the problem without the constraints left out so far
            one = None if alts is None else [alts]
            sol, choice = _solve(rails, comp, xp, work, y_b, p_b, one, skip, margin, out_dtype)
            row, k = 0, choice[0]
            if sol.status[0] != "infeasible":
                return sol, k, skip
        rule_boxes = alts[k][1] if alts else {}
        rules_b = (
            None if per_rule is None else {i: v for i, v in per_rule[b].items() if i not in skip}
        )
        conflict = _conflict(rails, comp, sol, row, prev_row, rule_boxes, skip, rules_b)
        conflict = _minimal(rails, comp, xp, work, y_b, p_b, conflict, margin, out_dtype)
        names = [rails.entries[e].name for e in conflict]
        rounding = (sol.conflicts[row] or {}).get("rounding")
        if rails.policy == "raise":
            raise GuardrailInfeasibleError(_message(rails, names, b, rounding))
        left = [e for e in conflict if e not in skip]
        if not left:
            raise GuardrailInfeasibleError(
                _message(rails, names, b, rounding) + " (prioritize failed)"
            )
        skip.add(min(left, key=lambda e: (rails.entries[e].priority, -rails.entries[e].order)))
    raise GuardrailInfeasibleError(_message(rails, [], b))


def _report(rails, comp, xp, work, y64, out, results, alts, per_rule, prev_rows, skips):
    B = y64.shape[0]
    moved = xp.astype(out, work) - y64
    top = xp.max(xp.abs(moved), axis=-1, keepdims=True)  # (B, 1): scaled, so huge moves
    unit = moved / xp.where(top > 0, top, 1.0)  # do not overflow when squared
    dist = host_list(top[:, 0] * xp.sqrt(xp.sum(unit * unit, axis=-1)))
    status, active, bound, unsat = [], [], [], []
    hosts: dict[int, tuple] = {}
    for b in range(B):
        sol, row, k = results[b]
        skip = skips[b]
        st = sol.status[row]
        status.append("prioritized" if skip else st)
        bound.append(sol.error_bound[row])
        unsat.append([rails.entries[e].name for e in sorted(skip)])
        if st == "feasible":
            active.append([])
            continue
        if id(sol) not in hosts:  # one transfer per solution, not per item
            hosts[id(sol)] = (host_list(sol.nu), host_list(sol.lam), host_list(sol.mu))
        nu, lam, mu = (h[row] for h in hosts[id(sol)])
        rule_boxes = {}
        if per_rule is not None:
            combos = _combos(per_rule[b], skip, comp.C)
            rule_boxes = combos[k][1] if combos else {}
        prev_row = None if prev_rows is None else prev_rows[b]
        found = _active(comp, nu, lam, mu, prev_row, rule_boxes, skip, rails)
        active.append([rails.entries[e].name for e in found])
    return EnforcementReport(status, active, dist, bound, unsat)


def observe(rails: GuardrailSet, y: Any) -> dict[str, list[str]]:
    """See :meth:`GuardrailSet.observe`."""
    xp, y, _ = _inputs(y, None)
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise InputError(f"outputs are (C,) or (B, C) with C >= 1, got shape {tuple(y.shape)}")
    _check(xp, y, "the outputs")
    Y = y[None, :] if y.ndim == 1 else y
    comp = rails.compiled(Y.shape[1])
    monitors = _monitors(rails, comp, Y.shape[0])
    rows = _rows_host(Y)
    for i in comp.rules:
        for b, m in enumerate(monitors[i]):
            m.step(rows[b])
    return {
        rails.entries[i].name: [m.result().verdict.value for m in monitors[i]] for i in comp.rules
    }


# --------------------------------------------------------------------- static feasibility
def static_conflicts(rails: GuardrailSet, C: int) -> list[str]:
    """Names of static constraints (boxes, linear, quadratic) in conflict, [] when feasible."""
    from kizzasi_lite.errors import ConfigError

    static = [e for e in rails.entries if e.constraint.kind not in ("rate_limit", "temporal")]
    if not static:
        return []
    try:
        comp = rails.compiled(C)
    except InputError as exc:
        raise ConfigError(f"the constraints disagree on the number of channels: {exc}") from exc
    lo, hi = comp.static_box()
    bad = [c for c in range(C) if lo[c] > hi[c]]
    if bad:
        c = bad[0]
        out = _sources(rails, comp, c, 1, None, {}, set()) + _sources(
            rails, comp, c, -1, None, {}, set()
        )
        return [rails.entries[e].name for e in sorted(set(out))]
    if not comp.rows and not comp.quads:
        return []
    xp = get_namespace()
    y = xp.zeros((1, C), dtype=xp.float64)
    arr = arrays(comp, xp, xp.float64)
    p = problem(comp, xp, xp.float64, 1, L=arr["L"][None, :], U=arr["U"][None, :])
    sol = project(y, p, keep_tol=rails.tolerance, max_iter=rails.max_iter)
    if sol.status[0] != "infeasible":
        return []
    conflict = _conflict(rails, comp, sol, 0, None, {}, set(), None)
    conflict = _minimal(rails, comp, xp, xp.float64, y, None, conflict, 0.0)
    return [rails.entries[e].name for e in conflict] or [e.name for e in static]


__all__ = ["enforce", "observe", "static_conflicts"]
