"""A primal-dual interior-point method for the projection of :mod:`kizzasi_lite.logic.projection`.

The streams that Dykstra's iteration and its polish leave without a certificate are those whose
active set the primal-dual active-set correction cycles on: several quadratic sets meeting a box,
the prediction far outside. For them :func:`interior_point` solves the same problem,

    min ½||x - y||²  s.t.  g_i(x) <= 0 (box sides, slab sides, quadratics),  E x = e (equalities),

by the infeasible primal-dual path-following method (Nocedal & Wright, *Numerical Optimization*,
2nd ed., §19.2; Boyd & Vandenberghe §11.7): slacks ``s > 0`` with ``g(x) + s = 0``, duals
``z > 0``, Newton steps on the perturbed KKT conditions ``s z = σ μ`` with the fraction-to-the-
boundary rule. The Newton system is solved in its augmented form ``[[H, Gᵀ, Eᵀ], [G, -S/Z, 0],
[E, 0, 0]]`` (``H = I + Σ 2 z_j Q_j``, ``E`` the equality rows): reduced to ``H + Gᵀ (Z/S) G`` its
entries for the active constraints grow as ``s -> 0`` until rounding swamps ``H``, and the dual
residual stalled near 1e-6 of the prediction's size. It needs no active-set guess, so it cannot
cycle; the iterate with the smallest residuals is returned, and it is only a candidate:
:func:`kizzasi_lite.logic.projection.certificate` decides, as for the polish. Batched over
streams with masks, array API functions only.
"""

from __future__ import annotations

from typing import Any

from kizzasi_lite.logic.polish import _diag
from kizzasi_lite.logic.projection import Problem, _finite, _quad_grad, _quad_value


def interior_point(xp: Any, y: Any, p: Problem, *, iters: int = 100) -> tuple:
    """``(x, lam, mu)`` for every stream of ``y`` (B, C), started from ``y`` itself (the start
    need not be feasible); ``lam`` (B, m) and ``mu`` (B, q) as :func:`certificate` reads them
    (a slab's multiplier signed by its side)."""
    B, C = y.shape
    m, q = p.m, p.q
    one = xp.ones((B, 1), dtype=y.dtype)
    pinned = p.L == p.U  # (B, C): an equality, not two sides
    on = [xp.isfinite(p.U) & ~pinned, xp.isfinite(p.L) & ~pinned]
    eq_on = [pinned]
    if m:
        eq = p.l == p.u
        on += [xp.isfinite(p.u) & ~eq, xp.isfinite(p.l) & ~eq]
        eq_on.append(eq)
    if q:
        on.append(xp.isfinite(p.qb))
    on = xp.astype(xp.concat(on, axis=1), y.dtype)  # (B, n): 1 where the inequality exists
    e_on = xp.astype(xp.concat(eq_on, axis=1), y.dtype)  # (B, C + m)
    eye = xp.eye(C, dtype=y.dtype)
    # the linear sides a . x <= b, fixed: box upper and lower, then slab upper and lower
    lin = xp.concat([eye, -eye] + ([p.A, -p.A] if m else []), axis=0)  # (k, C)
    b_lin = [_finite(xp, p.U), -_finite(xp, p.L)]
    b_lin = xp.concat(b_lin + ([_finite(xp, p.u), -_finite(xp, p.l)] if m else []), axis=1)
    k = lin.shape[0]
    G_lin = xp.broadcast_to(lin[None, :, :], (B, k, C)) * on[:, :k, None]  # (B, k, C)
    rows = [xp.broadcast_to(eye[None, :, :], (B, C, C))]  # the equality rows: pinned channels,
    if m:  # then equality slabs
        rows.append(xp.broadcast_to(p.A[None, :, :], (B, m, C)))
    E = xp.concat(rows, axis=1) * e_on[:, :, None]  # (B, C + m, C)
    target = [_finite(xp, p.L)] + ([_finite(xp, p.l)] if m else [])
    target = xp.concat(target, axis=1) * e_on  # (B, C + m)
    fill = xp.astype(e_on == 0, y.dtype)  # inactive equality rows solve to a zero step
    n, ne = on.shape[1], E.shape[1]
    zeros_ze = xp.zeros((B, n, ne), dtype=y.dtype)  # the Newton matrix's empty blocks
    zeros_ez = xp.zeros((B, ne, n), dtype=y.dtype)

    def g_and_jac(x: Any) -> tuple[Any, Any]:
        """The constraint values (B, n) and their gradients (B, n, C), 0 where absent."""
        g, jac = [xp.matmul(x, xp.matrix_transpose(lin)) - b_lin], [G_lin]
        for j, qd in enumerate(p.quads):
            g.append((_quad_value(xp, x, qd) - _finite(xp, p.qb[:, j]))[:, None])
            jac.append(_quad_grad(xp, x, qd)[:, None, :] * on[:, k + j : k + j + 1, None])
        return xp.concat(g, axis=1) * on, xp.concat(jac, axis=1)

    x = y
    g, G = g_and_jac(x)
    size = 1.0 + xp.max(xp.abs(g), axis=-1, keepdims=True)  # (B, 1)
    s = xp.where(on > 0, xp.maximum(-g, 1e-2 * size), one)  # slacks, > 0
    z = on * 1.0  # duals, > 0 where the inequality exists
    nu = xp.zeros((B, E.shape[1]), dtype=y.dtype)
    sigma = 0.1 * one
    count = xp.maximum(xp.sum(on, axis=-1, keepdims=True), 1.0)
    reach = 1.0 + xp.max(xp.abs(y), axis=-1, keepdims=True)  # (B, 1): the certificate's scale
    done = xp.zeros((B, 1), dtype=y.dtype) > 0
    best = (xp.full((B, 1), float("inf"), dtype=y.dtype), x, z, nu)
    for _ in range(iters):
        mu_gap = xp.sum(s * z * on, axis=-1, keepdims=True) / count  # (B, 1)
        r_d = (x - y) + _tmul(xp, G, z) + _tmul(xp, E, nu)  # (B, C)
        r_p = (g + s) * on
        r_e = (_mul(xp, E, x) - target) * e_on
        # converged to what the certificate can use (its bound ~ sqrt(2 n μ) + |r_d|), or
        # before the Newton system turns singular as the slacks vanish
        worst = xp.maximum(xp.max(xp.abs(r_p), axis=-1, keepdims=True) / size,
                           xp.max(xp.abs(r_d), axis=-1, keepdims=True) / reach)  # fmt: skip
        merit = xp.maximum(worst, xp.sqrt(mu_gap) / reach)  # (B, 1)
        better = merit < best[0]  # the iterate returned: rounding can undo later steps
        best = tuple(
            xp.where(better, new, old) for new, old in zip((merit, x, z, nu), best, strict=True)
        )
        done = done | (merit <= 1e-11)
        if bool(xp.all(done)):
            break
        r_c = (s * z - sigma * mu_gap) * on
        H = xp.broadcast_to(eye[None, :, :], (B, C, C))
        zq = z[:, z.shape[1] - q :] if q else None
        for j, qd in enumerate(p.quads):
            H = H + (2.0 * zq[:, j])[:, None, None] * qd.Q[None, :, :]
        # the augmented system in (dx, dz, dnu): not reduced to H + Gᵀ (z / s) G, whose huge
        # entries for the active constraints swamp H in rounding as s -> 0
        gap_d = xp.where(on > 0, -s / xp.where(on > 0, z, 1.0), 1.0)  # -s / z; 1: no constraint
        K = xp.concat([
            xp.concat([H, xp.matrix_transpose(G), xp.matrix_transpose(E)], axis=2),
            xp.concat([G, _diag(xp, gap_d), zeros_ze], axis=2),
            xp.concat([E, zeros_ez, _diag(xp, fill)], axis=2),
        ], axis=1)  # fmt: skip
        r_z = (r_c / xp.where(on > 0, z, 1.0) - r_p) * on
        rhs = xp.concat([-r_d, r_z, -r_e], axis=1)
        try:
            step = xp.linalg.solve(K, rhs[:, :, None])[:, :, 0]
        except Exception:  # singular: what there is goes to the certificate
            break
        dx, dz, dnu = step[:, :C], step[:, C : C + n] * on, step[:, C + n :]
        ds = (-r_p - _mul(xp, G, dx)) * on
        alpha = xp.minimum(_to_boundary(xp, s, ds, on), _to_boundary(xp, z, dz, on))  # (B, 1)
        alpha = xp.where(done, 0.0, alpha)
        x, s, z, nu = x + alpha * dx, s + alpha * ds, z + alpha * dz, nu + alpha * dnu
        s = xp.where(on > 0, s, one)
        sigma = xp.clip((1.0 - alpha) ** 3, 1e-4, 0.2)
        g, G = g_and_jac(x)
    _, x, z, nu = best
    lam = xp.zeros((B, 0), dtype=y.dtype)
    if m:
        lam = z[:, 2 * C : 2 * C + m] - z[:, 2 * C + m : 2 * C + 2 * m] + nu[:, C:]
    mu = z[:, z.shape[1] - q :] if q else xp.zeros((B, 0), dtype=y.dtype)
    return x, lam, mu


def _mul(xp: Any, M: Any, v: Any) -> Any:
    """``M v`` per stream: (B, r, c) by (B, c) -> (B, r)."""
    return xp.matmul(M, v[:, :, None])[:, :, 0]


def _tmul(xp: Any, M: Any, v: Any) -> Any:
    """``Mᵀ v`` per stream: (B, r, c) by (B, r) -> (B, c)."""
    return xp.matmul(v[:, None, :], M)[:, 0, :]


def _to_boundary(xp: Any, v: Any, dv: Any, on: Any) -> Any:
    """The fraction-to-the-boundary step: the largest ``α <= 1`` keeping ``v + α dv`` at least
    1% of ``v`` where ``on`` (B, 1)."""
    shrink = (on > 0) & (dv < 0)
    ratio = xp.where(shrink, -0.99 * v / xp.where(shrink, dv, -1.0), 1.0)
    return xp.minimum(xp.min(ratio, axis=-1, keepdims=True), 1.0)


__all__ = ["interior_point"]
