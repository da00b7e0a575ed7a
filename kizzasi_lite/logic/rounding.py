"""Answers in the output dtype: projections re-solved and checked after rounding.

``GuardrailSet.enforce`` computes in float64 (:func:`~kizzasi_lite.logic.enforce._work_dtype`)
and returns the dtype of the prediction. :func:`project_checked` makes that rounding safe: the
problem is solved again with its constraints moved inward by a few ulps of the output dtype
(:func:`shrunk`; more ulps when rounding still crosses a bound), and the rounded answer is
checked against the constraints with the set's relative tolerance
(:func:`kizzasi_lite.logic.projection.violation`). A stream that fails the check has no point of
the output dtype in its set (a set narrower than float32 resolution) and is marked infeasible,
so the policy of the set decides, as for any empty set; its conflict names the constraints
involved and ``"rounding"`` the dtype.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from kizzasi_lite.backends import dtype_name
from kizzasi_lite.logic.projection import (
    Solution,
    host_floats,
    host_list,
    project,
    violation,
    violation_parts,
)

EPS = {  # the ulp at 1.0 of each float dtype
    "float64": 2.220446049250313e-16,
    "float32": 1.1920928955078125e-07,
    "float16": 0.0009765625,
    "bfloat16": 0.0078125,
}


def tolerances(rails: Any, work: Any) -> dict:
    """Solver tolerances: the set's in float64; what float32 arithmetic can certify otherwise."""
    if dtype_name(work) == "float64":
        return {"keep_tol": rails.tolerance, "max_iter": rails.max_iter}
    return {
        "keep_tol": max(rails.tolerance, 1e-6),
        "feas_tol": 1e-6,
        "dist_tol": 1e-4,
        "max_iter": rails.max_iter,
    }


def shrunk(xp, p, x, eps):
    """The problem with every inequality moved inward by ``eps`` times the size of what
    rounding ``x`` (a first answer) changes in it: ``|bound|`` for a box, ``Σ|a_c x_c|`` for a
    slab, ``Σ|∇q(x)_c x_c| + eps |x|'|Q||x|`` for a quadratic (not the size of its terms,
    which can cancel: a small ball far from the origin). Bounds too close to move stay."""
    ax = xp.abs(x)

    def inward(bound, sign, size):
        finite = xp.isfinite(bound)
        v = xp.where(finite, bound, 0.0)
        return xp.where(finite, v + sign * eps * xp.maximum(xp.abs(v), size), bound)

    L, U = inward(p.L, 1.0, 1e-30), inward(p.U, -1.0, 1e-30)
    room = U >= L
    p.L, p.U = xp.where(room, L, p.L), xp.where(room, U, p.U)
    if p.m:
        size = xp.matmul(ax, xp.matrix_transpose(xp.abs(p.A)))  # (B, m)
        lo, hi = inward(p.l, 1.0, size), inward(p.u, -1.0, size)
        room = hi >= lo
        p.l, p.u = xp.where(room, lo, p.l), xp.where(room, hi, p.u)
    if p.q:
        sizes = []
        for qd in p.quads:
            grad = xp.abs(2.0 * xp.matmul(x, qd.Q) + qd.c)  # (B, C)
            curve = xp.sum(xp.matmul(ax, xp.abs(qd.Q)) * ax, axis=-1)  # (B,)
            sizes.append(xp.sum(grad * ax, axis=-1) + eps * curve)
        size = xp.stack(sizes, axis=-1)  # (B, q)
        finite = xp.isfinite(p.qb)
        p.qb = xp.where(finite, xp.where(finite, p.qb, 0.0) - 2.0 * eps * size, p.qb)
    return p


def _merge(xp: Any, sol: Solution, other: Solution, use: list[bool]) -> None:
    """Take the streams flagged in ``use`` from ``other`` (in place: ``sol`` is this call's)."""
    mask = xp.asarray(use)[:, None]
    sol.x = xp.where(mask, other.x, sol.x)
    sol.lam = xp.where(mask, other.lam, sol.lam)
    sol.mu = xp.where(mask, other.mu, sol.mu)
    sol.nu = xp.where(mask, other.nu, sol.nu)
    for i, u in enumerate(use):
        if u:
            sol.status[i], sol.error_bound[i] = other.status[i], other.error_bound[i]


def _rounded(xp: Any, x: Any, out_dtype: Any, work: Any) -> Any:
    """``x`` rounded to the output dtype, back in the work dtype (exact)."""
    if dtype_name(out_dtype) == dtype_name(work):
        return x
    return xp.astype(xp.astype(x, out_dtype), work)


_SHRINK = (4.0, 32.0, 256.0)  # inward moves tried, in ulps of the output dtype


def project_checked(rails, xp, work, y, p, out_dtype) -> Solution:
    """The projection of ``y`` onto ``p``, returned as it will be emitted (rounded to
    ``out_dtype``) and checked: every stream satisfies ``p`` to the tolerance after rounding,
    or is marked infeasible (a set too small to hold a value of the output dtype).

    For a narrower output dtype, a moved stream whose rounded answer is not inside every
    constraint is re-solved against ``p`` moved inward by a few ulps of that dtype
    (:func:`shrunk`), more when rounding still crosses a bound by more than the tolerance.
    Streams that already satisfy the constraints are returned unchanged.
    """
    tols = tolerances(rails, work)
    limit = tols["keep_tol"]
    sol = project(y, p, **tols)
    if dtype_name(out_dtype) == dtype_name(work):  # nothing is rounded: project's answers hold
        return sol
    # streams left as they were are the prediction itself (a value of out_dtype), within the
    # tolerance, so only the moved ones are checked after rounding
    moved = [s not in ("feasible", "infeasible") for s in sol.status]
    if any(moved):

        def emitted(s: Solution) -> Any:  # rounded; y stands in for infeasible (maybe inf) rows
            empty = xp.asarray([st == "infeasible" for st in s.status])[:, None]
            return xp.where(empty, y, _rounded(xp, s.x, out_dtype, work))

        def over(s: Solution) -> list[float]:  # the relative violation of what is emitted
            return host_floats(violation(xp, emitted(s), p))

        ulp = EPS.get(dtype_name(out_dtype), EPS["float32"])
        now = over(sol)
        # rounded to a point inside every constraint (0: not even by float64 noise): kept as is
        todo = [m and now[i] > 0.0 for i, m in enumerate(moved)]
        for factor in _SHRINK:
            if not any(todo):
                break
            tight = project(y, shrunk(xp, replace(p), sol.x, factor * ulp), **tols)
            later = over(tight)
            use = [
                t
                and tight.status[i] not in ("feasible", "infeasible")
                and (later[i] <= limit or now[i] > limit)
                for i, t in enumerate(todo)
            ]
            _merge(xp, sol, tight, use)
            now = [later[i] if u else now[i] for i, u in enumerate(use)]
            # moved further inward, a set that came out empty stays empty: stop there
            todo = [
                t and now[i] > limit and tight.status[i] != "infeasible" for i, t in enumerate(todo)
            ]
        bad = [m and sol.status[i] != "infeasible" and now[i] > limit for i, m in enumerate(moved)]
        if any(bad):
            _mark_unrepresentable(xp, sol, emitted(sol), p, bad, limit, out_dtype)
    sol.x = _rounded(xp, sol.x, out_dtype, work)
    return sol


def _mark_unrepresentable(xp, sol: Solution, x, p, bad: list[bool], limit, out_dtype) -> None:
    """Mark the ``bad`` streams infeasible: no value of ``out_dtype`` was found that satisfies
    the constraints to the tolerance. Their conflict: the constraints the rounded answer
    violates and those binding at the exact projection (they shape the tiny set together)."""
    parts = violation_parts(xp, x, p)
    hosts = {k: host_list(v) for k, v in parts.items()}
    nu, lam, mu = host_list(sol.nu), host_list(sol.lam), host_list(sol.mu)
    for b, flag in enumerate(bad):
        if not flag:
            continue
        box = {(c, 1) for c, v in enumerate(hosts["upper"][b]) if v > limit}
        box |= {(c, -1) for c, v in enumerate(hosts["lower"][b]) if v > limit}
        box |= {(c, 1 if v > 0 else -1) for c, v in enumerate(nu[b]) if v != 0.0}
        rows = {k for k, v in enumerate(hosts.get("rows", [[]] * len(bad))[b]) if v > limit}
        rows |= {k for k, v in enumerate(lam[b]) if v != 0.0}
        quads = {j for j, v in enumerate(hosts.get("quads", [[]] * len(bad))[b]) if v > limit}
        quads |= {j for j, v in enumerate(mu[b]) if v > 0.0}
        sol.status[b], sol.error_bound[b] = "infeasible", math.inf
        sol.conflicts[b] = {
            "box": sorted(box),
            "rows": sorted(rows),
            "quads": sorted(quads),
            "rounding": dtype_name(out_dtype),
        }


__all__ = ["EPS", "project_checked", "shrunk", "tolerances"]
