"""Euclidean projection of predictions onto an intersection of convex constraint sets.

For every stream ``b`` of a batch ``y`` of shape ``(B, C)`` this computes

    x_b = argmin_x ||x - y_b||^2   subject to   L_b <= x <= U_b                 (box)
                                                l_bk <= a_k . x <= u_bk      (slabs, k < m)
                                                x' Q_j x + c_j . x <= b_bj   (Q_j PSD, j < q)

A half-space is a slab with ``l = -inf``, an equality one with ``l = u``. The box alone is a clip
(exact). The intersection is solved by

1. **Dykstra's alternating projections** (Dykstra 1983; Boyle & Dykstra 1986), each set projected
   exactly: the box by a clip, a slab in closed form, a quadratic set by Newton's method on the
   multiplier of its secular equation in the eigenbasis of ``Q`` (monotone from the left because
   the equation is convex and decreasing). Dykstra converges to the projection for any closed
   convex sets with a common point; its increments are the dual variables.
2. **Polishing**: the active set read off the increments is solved exactly (Newton on the KKT
   system, one step when no quadratic is active) and corrected primal-dual active-set style
   (Hintermüller, Ito & Kunisch 2002), as OSQP polishes ADMM (Stellato et al. 2020; ADMM: Boyd
   et al. 2011). Streams still uncertified after ``_INTERIOR_AFTER`` cycles (the correction
   cycling on their active set: several quadratics meeting a box, the prediction far outside)
   are solved once by a primal-dual interior-point method
   (:func:`kizzasi_lite.logic.interior.interior_point`), which needs no active set.
3. **A certified stopping rule**. For a feasible ``x̂`` and multipliers ``λ`` (slabs, sign chosen by
   the side), ``μ >= 0`` (quadratics) and ``ν`` (box), let ``r = x̂ - y + Σλ_k a_k + Σμ_j ∇q_j(x̂)
   + ν`` and ``s = Σ λ_k (u_k - a_k.x̂)^± + Σ μ_j (b_j - q_j(x̂)) + Σ ν_c (U_c - x̂_c)^±`` (each
   term uses the bound on the side of the multiplier's sign). Strong convexity of the objective
   and convexity of the constraints give ``||x̂ - x*|| <= ||r|| + sqrt(||r||^2 + 2 s)``; a stream
   is done when that bound is below ``dist_tol`` and ``x̂`` satisfies every constraint to
   ``feas_tol`` (relative), so the answer is never a clamp that can leave a constraint violated.
4. **Infeasibility**: when the sets do not intersect, Dykstra's increments grow without bound;
   their growth over the last block of iterations is a Farkas certificate (increments that sum
   to ~0 with negative total support) and names the constraints in conflict. A box whose
   ``L > U`` is reported at once.

Everything is batched over streams with masks (no per-stream Python loops, no item assignment)
and uses array API standard functions only, so it runs on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kizzasi_lite.errors import ConfigError

_INF = math.inf


@dataclass
class Quad:
    """One quadratic set ``x'Qx + c.x <= b`` (``b`` is per stream, in :class:`Problem`).

    ``V`` (C, C) holds the eigenvectors of ``Q`` as columns, ``w`` (C,) its eigenvalues (>= 0),
    ``ct = V^T c`` (C,). ``positive``: every eigenvalue > 0 (the set is a bounded ellipsoid).
    ``t_cap``: where ``x'Qx + c.x`` is bounded below, the multiplier of :func:`project_quad`
    beyond which its point no longer moves (it is then the minimiser, to float64 precision);
    ``inf`` where it is unbounded below.
    """

    Q: Any
    c: Any
    V: Any
    w: Any
    ct: Any
    positive: bool = False  # Q positive definite (the set is a bounded ellipsoid)
    t_cap: float = math.inf


@dataclass
class Problem:
    """The constraint data of one batched projection, on the backend and dtype of the work.

    ``L``, ``U``: (B, C) box bounds (``±inf`` where absent). ``A``: (m, C) slab normals, ``l``,
    ``u``: (B, m) slab bounds; ``quads``: the q quadratic sets with ``qb`` (B, q) their bounds
    (``inf`` switches one off for a stream). ``A``/``l``/``u`` are None when m == 0.
    """

    L: Any
    U: Any
    A: Any = None
    l: Any = None
    u: Any = None
    quads: list[Quad] = field(default_factory=list)
    qb: Any = None

    @property
    def m(self) -> int:
        return 0 if self.A is None else self.A.shape[0]

    @property
    def q(self) -> int:
        return len(self.quads)


@dataclass
class Solution:
    """The projection of every stream and how it was obtained.

    ``x`` (B, C); ``status[b]`` is ``"feasible"`` (already inside, not moved), ``"projected"``
    (certified), ``"uncertified"`` (feasible, iteration budget spent before the certificate)
    or ``"infeasible"``; ``error_bound[b]`` bounds ``||x_b - x*_b||`` (0 when not moved).
    ``lam`` (B, m), ``mu`` (B, q), ``nu`` (B, C): multipliers (nonzero = active constraint).
    ``conflicts[b]``: for infeasible streams, ``{"box": [(channel, side)], "rows": [k],
    "quads": [j]}`` (side +1 = upper bound, -1 = lower bound); else None.
    """

    x: Any
    status: list[str]
    error_bound: list[float]
    lam: Any
    mu: Any
    nu: Any
    conflicts: list[dict | None]
    iterations: int = 0


# ------------------------------------------------------------------------------------ helpers
def _finite(xp: Any, v: Any, fill: float = 0.0) -> Any:
    return xp.where(xp.isfinite(v), v, fill)


def host_list(v: Any) -> list:
    """An array of any backend as nested Python lists, in one transfer (not one per item)."""
    if hasattr(v, "tolist"):
        return v.tolist()
    from kizzasi_lite.backends import to_numpy  # array_api_strict: no tolist in the standard

    return to_numpy(v).tolist()


def host_floats(v: Any) -> list[float]:
    """A (B,) array as Python floats (the solver's only host copies: a few per call)."""
    return [float(a) for a in host_list(v)]


def host_bools(v: Any) -> list[bool]:
    """A (B,) boolean array as Python bools."""
    return [bool(a) for a in host_list(v)]


def _any(xp: Any, v: Any) -> bool:
    return bool(xp.any(v))


def _rows_dot(xp: Any, x: Any, A: Any) -> Any:
    return xp.matmul(x, xp.matrix_transpose(A))  # (B, m)


def _quad_value(xp: Any, x: Any, qd: Quad) -> Any:
    return xp.sum(xp.matmul(x, qd.Q) * x, axis=-1) + xp.matmul(x, qd.c)  # (B,)


def _quad_grad(xp: Any, x: Any, qd: Quad) -> Any:
    return 2.0 * xp.matmul(x, qd.Q) + qd.c  # (B, C); Q is symmetric


def violation_parts(xp: Any, x: Any, p: Problem) -> dict[str, Any]:
    """The relative violation of each constraint by each stream of ``x`` (B, C) (> 0: violated,
    ``-inf`` where a bound is absent): ``"upper"``, ``"lower"`` (B, C) for the box, ``"rows"``
    (B, m) for the slabs (the worse side), ``"quads"`` (B, q); scales as in :func:`violation`.
    """
    over = xp.where(xp.isfinite(p.U), (x - p.U) / xp.maximum(xp.abs(_finite(xp, p.U)), 1.0), -_INF)
    under = xp.where(xp.isfinite(p.L), (p.L - x) / xp.maximum(xp.abs(_finite(xp, p.L)), 1.0), -_INF)
    out = {"upper": over, "lower": under}
    if p.m:
        t = _rows_dot(xp, x, p.A)  # (B, m)
        size = _rows_dot(xp, xp.abs(x), xp.abs(p.A))  # (B, m): the size of the terms of a.x
        scale_u = xp.maximum(xp.maximum(size, xp.abs(_finite(xp, p.u))), 1.0)
        scale_l = xp.maximum(xp.maximum(size, xp.abs(_finite(xp, p.l))), 1.0)
        up = xp.where(xp.isfinite(p.u), (t - p.u) / scale_u, -_INF)
        lo = xp.where(xp.isfinite(p.l), (p.l - t) / scale_l, -_INF)
        out["rows"] = xp.maximum(up, lo)  # (B, m)
    if p.q:
        cols = []
        for j, qd in enumerate(p.quads):
            b = p.qb[:, j]
            quad = xp.sum(xp.matmul(x, qd.Q) * x, axis=-1)
            lin = xp.matmul(x, qd.c)
            scale = xp.maximum(xp.maximum(xp.abs(quad) + xp.abs(lin), xp.abs(_finite(xp, b))), 1.0)
            cols.append(xp.where(xp.isfinite(b), (quad + lin - b) / scale, -_INF))  # (B,)
        out["quads"] = xp.stack(cols, axis=-1)  # (B, q)
    return out


def violation(xp: Any, x: Any, p: Problem) -> Any:
    """The largest relative violation of any constraint by each stream of ``x`` (B, C) -> (B,).

    Box: ``(x - U) / max(1, |U|)``; slab: ``(a.x - u) / max(1, |u|, Σ|a_c x_c|)``; quadratic:
    ``(q(x) - b) / max(1, |b|, |x'Qx| + |c.x|)``; 0 when every constraint holds.
    """
    parts = violation_parts(xp, x, p)
    worst = xp.max(xp.maximum(parts["upper"], parts["lower"]), axis=-1)  # (B,)
    for key in ("rows", "quads"):
        if key in parts:
            worst = xp.maximum(worst, xp.max(parts[key], axis=-1))
    return xp.maximum(worst, 0.0)


# ----------------------------------------------------------------------- exact set projections
def project_quad(xp: Any, w: Any, qd: Quad, b: Any, *, max_newton: int = 100) -> Any:
    """Project each row of ``w`` (B, C) onto ``{x : x'Qx + c.x <= b}`` (``b`` (B, 1)).

    In the eigenbasis ``z = V^T w`` the projection is ``x~_i(t) = (z_i - t c~_i) / (1 + 2 t w_i)``
    with ``t >= 0`` the root of ``g(t) = Σ w_i x~_i^2 + c~_i x~_i - b``, which is convex and
    decreasing, so Newton's method from ``t = 0`` increases monotonically to the root. For a
    bounded ellipsoid (``qd.positive``) Newton runs on the secular equation instead
    (:func:`_secular_step`), which converges in a few steps where ``g``'s takes ~12.
    Where rounding leaves no root (``g`` above 0 even at the minimiser: a set smaller than its
    data's float64 resolution), ``t`` stops at ``qd.t_cap`` and the row is the minimiser, the
    point that violates the set least.
    """
    bf = _finite(xp, b)  # (B, 1)
    z = xp.matmul(w, qd.V)  # (B, C): coordinates in the eigenbasis
    wv, ct = qd.w, qd.ct
    g0 = xp.sum(wv * z * z + ct * z, axis=-1, keepdims=True) - bf  # (B, 1)
    inside = (g0 <= 0.0) | ~xp.isfinite(b)
    if bool(xp.all(inside)):
        return w
    step = _secular_step(xp, z, qd, bf) if qd.positive else _value_step(xp, z, qd, bf)
    t = xp.zeros_like(bf)  # (B, 1)
    scale = xp.maximum(xp.abs(bf), 1.0) * 1e-15
    for it in range(max_newton):
        g, t_new = step(t)  # (B, 1): the constraint's excess at t, Newton's next t
        t_new = xp.where(inside, 0.0, xp.minimum(xp.maximum(t_new, t), qd.t_cap))
        if it % 2 == 1 and bool(xp.all((xp.abs(g) <= scale) | (t_new == t))):
            t = t_new
            break
        t = t_new
    x = xp.matmul((z - t * ct) / (1.0 + 2.0 * t * wv), xp.matrix_transpose(qd.V))  # (B, C)
    return xp.where(inside, w, x)


def _value_step(xp: Any, z: Any, qd: Quad, bf: Any) -> Callable:
    """``t -> (g(t), t - g(t) / g'(t))``: Newton on :func:`project_quad`'s ``g`` itself."""
    wv, ct = qd.w, qd.ct
    lead = 2.0 * wv * z + ct  # (B, C)

    def step(t: Any) -> tuple[Any, Any]:
        den = 1.0 + 2.0 * t * wv  # (B, C)
        xt = (z - t * ct) / den
        g = xp.sum(wv * xt * xt + ct * xt, axis=-1, keepdims=True) - bf  # (B, 1)
        slope = lead / den
        dg = -xp.sum(slope * slope / den, axis=-1, keepdims=True)  # (B, 1) < 0
        return g, t - g / xp.where(dg < 0.0, dg, -1.0)

    return step


def _secular_step(xp: Any, z: Any, qd: Quad, bf: Any) -> Callable:
    """Newton on the secular equation of a bounded ellipsoid, ``t -> (g(t), next t)``.

    About its centre ``-c~ / 2w`` the set is ``Σ w_i u_i^2 <= r`` (``r = b + Σ c~_i^2 / 4w_i``)
    and the projection's ``u_i(t) = u_i / (1 + 2 t w_i)``, so ``g(t) = q(t) - r`` with
    ``q(t) = Σ w_i u_i(t)^2``. ``phi(t) = q^-1/2 - r^-1/2`` is a trust region's secular function
    (Moré & Sorensen 1983): concave and increasing, linear for a ball, so Newton from ``t = 0``
    increases monotonically to its root, quadratically. Where ``r <= 0`` (the set at most its
    centre, once rounded) the step goes to ``qd.t_cap``: the centre.
    """
    wv, ct = qd.w, qd.ct
    half = ct / (2.0 * wv)  # (C,): minus the centre
    wu2 = wv * (z + half) ** 2  # (B, C): w_i u_i^2
    w2u2 = wv * wu2
    r = bf + 0.5 * xp.sum(ct * half)  # (B, 1)
    empty = r <= 0.0
    r = xp.where(empty, 1.0, r)

    def step(t: Any) -> tuple[Any, Any]:
        den = 1.0 + 2.0 * t * wv  # (B, C)
        den2 = den * den
        q = xp.sum(wu2 / den2, axis=-1, keepdims=True)  # (B, 1)
        dq = xp.sum(w2u2 / (den2 * den), axis=-1, keepdims=True)  # (B, 1): -q'(t) / 4
        t_new = t + q * (xp.sqrt(q / r) - 1.0) / (2.0 * xp.where(dq > 0.0, dq, 1.0))
        return q - r, xp.where(empty, qd.t_cap, t_new)

    return step


# ---------------------------------------------------------------------------------- Dykstra
@dataclass
class _State:
    x: Any  # (B, C)
    pbox: Any  # (B, C)
    lam: list  # m arrays (B,): slab increments are lam_k * a_k
    pq: list  # q arrays (B, C)
    zq: list  # q arrays (B, C): the last projection onto each quadratic set


def _dykstra(xp: Any, p: Problem, st: _State, sets: dict, n: int) -> _State:
    """``n`` cycles of Dykstra's algorithm over the box, each slab and each quadratic set.

    ``sets``: per-call constants (slab columns (C, 1), rows (C,), norms, bound columns (B, 1)).
    Slab increments are kept as multipliers ``lam_k`` (B, 1) (the increment is ``lam_k a_k``).
    """
    x, pbox, lam, pq, zq = st.x, st.pbox, list(st.lam), list(st.pq), list(st.zq)
    for _ in range(n):
        w = x + pbox
        x = xp.clip(w, p.L, p.U)
        pbox = w - x
        for k, (col, a, n2, lo, hi) in enumerate(sets["rows"]):
            t = xp.matmul(x, col) + lam[k] * n2  # (B, 1)
            new = (t - xp.clip(t, lo, hi)) / n2
            x = x + (lam[k] - new) * a
            lam[k] = new
        for j, (qd, b) in enumerate(sets["quads"]):
            w = x + pq[j]
            x = project_quad(xp, w, qd, b)
            pq[j] = w - x
            zq[j] = x
    return _State(x, pbox, lam, pq, zq)


def _quad_multipliers(xp: Any, st: _State, p: Problem) -> Any:
    """μ_j from the increments ``pq_j = μ_j ∇q_j(x_j)`` (B, q)."""
    if not p.q:
        return xp.zeros((st.x.shape[0], 0), dtype=st.x.dtype)
    cols = []
    for j, qd in enumerate(p.quads):
        g = _quad_grad(xp, st.zq[j], qd)
        gg = xp.sum(g * g, axis=-1)
        cols.append(xp.where(gg > 0, xp.sum(st.pq[j] * g, axis=-1) / xp.where(gg > 0, gg, 1.0), 0))
    return xp.maximum(xp.stack(cols, axis=-1), 0.0)


# ---------------------------------------------------------------------------- the certificate
def certificate(xp: Any, y: Any, x: Any, lam: Any, mu: Any, p: Problem) -> tuple[Any, Any, Any]:
    """``(bound, lam, nu)``: a bound on ``||x - x*||`` per stream (B,) from multipliers ``lam``
    (B, m) and ``mu`` (B, q), with the multipliers as used (signs cleaned, box ``nu`` chosen).

    Valid for any ``x`` that satisfies the constraints (the caller checks that separately).
    """
    s = x - y  # (B, C): stationarity without the box multiplier
    comp = xp.zeros_like(x[:, 0])
    if p.m:
        lam = xp.where(
            (lam > 0) & xp.isfinite(p.u), lam, xp.where((lam < 0) & xp.isfinite(p.l), lam, 0.0)
        )
        t = _rows_dot(xp, x, p.A)
        gap = xp.where(lam > 0, _finite(xp, p.u) - t, t - _finite(xp, p.l))
        comp = comp + xp.sum(xp.abs(lam) * gap, axis=-1)
        s = s + xp.matmul(lam, p.A)
    if p.q:
        mu = xp.where(xp.isfinite(p.qb), xp.maximum(mu, 0.0), 0.0)
        for j, qd in enumerate(p.quads):
            s = s + mu[:, j : j + 1] * _quad_grad(xp, x, qd)
            comp = comp + mu[:, j] * (_finite(xp, p.qb[:, j]) - _quad_value(xp, x, qd))
    gap_u = _finite(xp, p.U) - x  # (B, C)
    gap_l = x - _finite(xp, p.L)
    use_u = (s < 0) & xp.isfinite(p.U) & (gap_u <= xp.abs(s))
    use_l = (s > 0) & xp.isfinite(p.L) & (gap_l <= xp.abs(s))
    nu = xp.where(use_u | use_l, -s, 0.0)
    r = s + nu
    comp = comp + xp.sum(xp.where(use_u, -s * gap_u, xp.where(use_l, s * gap_l, 0.0)), axis=-1)
    rn = xp.sqrt(xp.sum(r * r, axis=-1))
    bound = rn + xp.sqrt(rn * rn + 2.0 * xp.maximum(comp, 0.0))
    return bound, lam, nu


# ---------------------------------------------------------------------------- infeasibility
def _farkas(xp: Any, p: Problem, before: _State, after: _State, rows: list) -> tuple[Any, Any]:
    """Infeasibility certificates from the growth of the increments between two states.

    With ``d_i`` the growth of set i's increment (each in the normal cone of its set, a
    quadratic set replaced by its supporting half-space at the last projection), any common
    point ``z`` gives ``Σ σ_i(d_i) >= <Σ d_i, z>``. The box takes up ``Σ d_i`` where its bounds
    are finite; with ``e`` what is left, ``Σ σ_i(d_i) + 1e3 R |e| < 0`` (``R = 1 + max|x|``)
    proves that no point within ``1e3 R`` of the origin satisfies every constraint.
    Returns ``(infeasible (B,), weights)`` with weights[(kind, index)] (B,) the share of each set
    in the certificate (the constraints in conflict are those with a large share).
    """
    total = xp.zeros_like(after.x)  # Σ d_i without the box
    support = xp.zeros_like(after.x[:, 0])
    weights = {}
    for k, a in enumerate(rows):
        d = (after.lam[k] - before.lam[k])[:, 0]  # (B,)
        bound = xp.where(d > 0, p.u[:, k], p.l[:, k])
        support = support + xp.where(d == 0, 0.0, d * _finite(xp, bound))
        support = xp.where((d != 0) & ~xp.isfinite(bound), _INF, support)
        total = total + d[:, None] * a
        weights[("row", k)] = xp.abs(d) * float(xp.sqrt(xp.sum(a * a)))
    for j, qd in enumerate(p.quads):
        d = after.pq[j] - before.pq[j]  # (B, C)
        if qd.positive:  # a bounded ellipsoid: its support function in closed form
            b = p.qb[:, j]
            vt = xp.matmul(d, qd.V)  # (B, C) in the eigenbasis
            rho = _finite(xp, b) + xp.sum(qd.ct * qd.ct / (4.0 * qd.w))
            sig = -xp.sum(vt * qd.ct / (2.0 * qd.w), axis=-1)
            sig = sig + xp.sqrt(xp.maximum(rho, 0.0) * xp.sum(vt * vt / qd.w, axis=-1))
            support = support + xp.where(xp.isfinite(b), sig, _INF)
        else:  # the supporting half-space at the last projection (an outer approximation)
            g = _quad_grad(xp, after.zq[j], qd)  # (B, C)
            gg = xp.sum(g * g, axis=-1)
            t = xp.maximum(xp.sum(d * g, axis=-1), 0.0)
            t = xp.where(gg > 0, t / xp.where(gg > 0, gg, 1.0), 0.0)
            support = support + t * xp.sum(g * after.zq[j], axis=-1)
            d = t[:, None] * g
        total = total + d
        weights[("quad", j)] = xp.sqrt(xp.sum(d * d, axis=-1))
    nu = -total  # the box takes up the rest, so that all increments sum to zero
    up = nu > 0
    bound = xp.where(up, p.U, p.L)
    usable = xp.isfinite(bound)
    support = support + xp.sum(xp.where(usable, nu * _finite(xp, bound), 0.0), axis=-1)
    left = xp.sqrt(xp.sum(xp.where(usable, 0.0, nu * nu), axis=-1))
    size = xp.sum(xp.abs(xp.where(usable, nu, 0.0)), axis=-1)
    for w in weights.values():
        size = size + w
    for c in range(nu.shape[1]):
        weights[("box", c)] = xp.where(usable[:, c], nu[:, c], 0.0)  # signed: +1 upper
    reach = 1.0 + xp.max(xp.abs(after.x), axis=-1)
    bad = (size > 0) & (support + 1e3 * reach * left < -1e-9 * size * reach)
    return bad, {k: v / xp.where(size > 0, size, 1.0) for k, v in weights.items()}


def _conflicts(weights: dict, b: int, threshold: float = 1e-6) -> dict:
    out: dict = {"box": [], "rows": [], "quads": []}
    for (kind, i), w in weights.items():
        v = float(w[b])
        if abs(v) <= threshold:
            continue
        if kind == "box":
            out["box"].append((i, 1 if v > 0 else -1))
        else:
            out[kind + "s"].append(i)
    return out


# ------------------------------------------------------------------------------- the solver
# Dykstra cycles after which the streams still without a certificate (the polish cycling on
# their active set) are solved once by the interior-point method (~10-20 ms)
_INTERIOR_AFTER = 64


def project(
    y: Any,
    p: Problem,
    *,
    feas_tol: float = 1e-12,
    keep_tol: float = 1e-9,
    dist_tol: float = 1e-7,
    max_iter: int = 4000,
) -> Solution:
    """Project every stream of ``y`` (B, C) onto its constraint set ``p`` (see the module doc).

    ``keep_tol``: a stream whose relative violation is at most this is returned unchanged.
    ``feas_tol``: the relative violation a certified answer may have. ``dist_tol``: the certified
    bound on the distance to the exact projection, relative to ``1 + max|y|``. Computations run in
    the dtype of ``y`` (the caller passes float64 where the backend has it).
    """
    from kizzasi_lite.backends import namespace
    from kizzasi_lite.logic.interior import interior_point
    from kizzasi_lite.logic.polish import polish

    xp = namespace(y)
    B, C = y.shape
    zeros_m = xp.zeros((B, p.m), dtype=y.dtype)
    zeros_q = xp.zeros((B, p.q), dtype=y.dtype)
    scale = 1.0 + xp.max(xp.abs(y), axis=-1)  # (B,)
    keep = violation(xp, y, p) <= keep_tol  # (B,) already feasible: never moved
    box_bad = xp.any(p.L > p.U, axis=-1)
    keep = keep & ~box_bad
    original = p
    if _any(xp, box_bad):  # empty boxes are reported as they are; iterate on a valid stand-in
        p = replace(p, U=xp.maximum(p.U, p.L))
    if p.m == 0 and p.q == 0:
        x = xp.where(keep[:, None], y, xp.clip(y, p.L, p.U))
        return _finish(xp, y, x, original, keep, box_bad, box_bad, zeros_m, zeros_q, y - x, {}, 0)
    rows = [p.A[k, :] for k in range(p.m)]
    norms = [float(xp.sum(a * a)) for a in rows]
    if any(n == 0.0 for n in norms):
        raise ConfigError("a slab normal is zero (a constraint 0 . x <= b)")
    sets = {
        "rows": [
            (a[:, None], a, n2, p.l[:, k : k + 1], p.u[:, k : k + 1])
            for k, (a, n2) in enumerate(zip(rows, norms, strict=True))
        ],
        "quads": [(qd, p.qb[:, j : j + 1]) for j, qd in enumerate(p.quads)],
    }
    zero = xp.zeros_like(y)
    st = _State(y, zero, [zeros_m[:, :1] for _ in rows], [zero] * p.q, [y] * p.q)
    done = keep | box_bad
    bad = box_bad
    out = (y, zeros_m, zeros_q, zero)  # the certified (x, lam, mu, nu) so far

    def certified(x: Any, lam: Any, mu: Any) -> tuple[Any, tuple]:
        """The streams not yet done whose candidate is feasible and certified, and the
        candidate with its multipliers as the certificate used them."""
        bound, lam, nu = certificate(xp, y, x, lam, mu, p)
        ok = (violation(xp, x, p) <= feas_tol) & (bound <= dist_tol * scale) & ~done
        return ok, (x, lam, mu, nu)

    weights: dict = {}
    # one slab or quadratic set and no box: a Dykstra cycle is its exact projection, no polish
    single = p.m + p.q == 1 and not _any(xp, xp.isfinite(p.L) | xp.isfinite(p.U))
    it, chunk, before, tried = 0, 1 if p.m + p.q == 1 else 4, st, False
    while it < max_iter and not bool(xp.all(done)):
        st = _dykstra(xp, p, st, sets, chunk)
        it += chunk
        try:
            x, lam, mu = (
                _dykstra_answer(xp, st, p, zeros_m) if single else polish(xp, y, p, st, scale)
            )
        except Exception:  # a singular active set on a backend that raises: keep iterating
            x, lam, mu = _dykstra_answer(xp, st, p, zeros_m)
        ok, cand = certified(x, lam, mu)
        lam, nu = cand[1], cand[3]  # as the certificate used them
        out, done = _take(xp, out, cand, ok), done | ok
        if it >= _INTERIOR_AFTER and not single and not tried and not bool(xp.all(done)):
            tried = True  # streams the polish cycles on: once, by the interior-point method
            ok, cand = certified(*interior_point(xp, y, p))
            out, done = _take(xp, out, cand, ok), done | ok
        if it >= 16:
            infeasible, w = _farkas(xp, p, before, st, rows)
            infeasible = infeasible & ~done
            if _any(xp, infeasible):
                bad = bad | infeasible
                done = done | infeasible
                weights = {
                    k: xp.where(infeasible, v, weights.get(k, 0.0 * v)) for k, v in w.items()
                }
            before = st
        chunk = min(2 * chunk, 128)
    if not bool(xp.all(done)):  # budget spent: keep feasible answers, call the rest infeasible
        left = ~done
        v_dyk, v_pol = violation(xp, st.x, p), violation(xp, x, p)
        cand = xp.where((v_pol <= v_dyk)[:, None], x, st.x)
        fine = left & (xp.minimum(v_pol, v_dyk) <= keep_tol)
        out = _take(xp, out, (cand, lam, mu, nu), fine)
        stuck = left & ~fine
        if _any(xp, stuck):
            bad = bad | stuck
            share = {("row", k): xp.abs(st.lam[k][:, 0]) for k in range(p.m)}
            share.update({("quad", j): xp.sqrt(xp.sum(st.pq[j] ** 2, axis=-1)) for j in range(p.q)})
            share.update({("box", c): st.pbox[:, c] for c in range(C)})
            top = 0.0 * scale
            for v in share.values():
                top = xp.maximum(top, xp.abs(v))
            top = xp.where(top > 0, top, 1.0)
            weights = {
                k: xp.where(stuck, v / top, weights.get(k, 0.0 * v)) for k, v in share.items()
            }
        uncertified = fine
    else:
        uncertified = xp.zeros_like(keep)
    x_out, lam_out, mu_out, nu_out = out
    x_out = xp.where(keep[:, None], y, x_out)
    sol = _finish(xp, y, x_out, original, keep, bad, box_bad, lam_out, mu_out, nu_out, weights, it)
    for b, flag in enumerate(host_bools(uncertified)):
        if flag:
            sol.status[b] = "uncertified"
    return sol


def _take(xp: Any, out: tuple, cand: tuple, ok: Any) -> tuple:
    """``out``'s arrays with the streams ``ok`` (B,) taken from ``cand``'s."""
    return tuple(xp.where(ok[:, None], c, o) for c, o in zip(cand, out, strict=True))


def _dykstra_answer(xp: Any, st: _State, p: Problem, zeros_m: Any) -> tuple[Any, Any, Any]:
    """Dykstra's point and the multipliers its increments give: ``(x, lam, mu)``."""
    lam = xp.concat(st.lam, axis=-1) if p.m else zeros_m
    return st.x, lam, _quad_multipliers(xp, st, p)


def _finish(xp, y, x, p, keep, bad, box_bad, lam, mu, nu, weights, it) -> Solution:
    """Statuses, error bounds and conflict lists (host side, per stream)."""
    B, C = y.shape
    moved = host_bools(xp.any(x != y, axis=-1))
    keep_h, bad_h, box_h = host_bools(keep), host_bools(bad), host_bools(box_bad)
    if p.m or p.q:
        bounds = host_floats(certificate(xp, y, x, lam, mu, p)[0])
    else:
        bounds = [0.0] * B
    status, conflicts, err = [], [], []
    for b in range(B):
        if bad_h[b]:
            status.append("infeasible")
            err.append(math.inf)
            if box_h[b]:
                L, U = host_floats(p.L[b, :]), host_floats(p.U[b, :])
                chans = [c for c in range(C) if L[c] > U[c]]
                conflicts.append(
                    {"box": [(c, s) for c in chans for s in (-1, 1)], "rows": [], "quads": []}
                )
            else:
                conflicts.append(_conflicts(weights, b))
            continue
        status.append("feasible" if keep_h[b] or not moved[b] else "projected")
        err.append(0.0 if status[-1] == "feasible" else bounds[b])
        conflicts.append(None)
    return Solution(x, status, err, lam, mu, nu, conflicts, it)


__all__ = [
    "Problem",
    "Quad",
    "Solution",
    "certificate",
    "project",
    "project_quad",
    "violation",
    "violation_parts",
]
