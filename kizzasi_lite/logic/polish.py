"""Polishing: the exact solution of an active set guessed from Dykstra's iterate.

The increments of Dykstra's algorithm tell which constraints push the iterate: the box channels
with a nonzero box increment, the slabs with a nonzero multiplier, the quadratic sets with a
nonzero increment. Fixing those as equalities leaves a small KKT system, linear in ``(x, λ)``
for fixed quadratic multipliers ``μ``; Newton's method on ``q_j(x(μ)) = b_j`` finds ``μ``. The
guess is then corrected primal-dual active-set style (Hintermüller, Ito & Kunisch, *The
primal-dual active set strategy as a semismooth Newton method*, SIOPT 2002): constraints with a
multiplier of the wrong sign leave, violated ones join. OSQP polishes its ADMM iterates the same
way (Stellato et al., *OSQP: an operator splitting solver for quadratic programs*, 2020). The
result is only a candidate: :func:`kizzasi_lite.logic.projection.certificate` decides.
"""

from __future__ import annotations

import math
from typing import Any

from kizzasi_lite.logic.projection import (
    Problem,
    _any,
    _finite,
    _quad_grad,
    _quad_multipliers,
    _quad_value,
    _rows_dot,
    _State,
)


def _eye(xp: Any, n: int, like: Any) -> Any:
    return xp.eye(n, dtype=like.dtype)


def _diag(xp: Any, v: Any) -> Any:
    """(B, n) -> (B, n, n) diagonal matrices."""
    return _eye(xp, v.shape[-1], v)[None, :, :] * v[:, :, None]


def _kkt_matrix(xp: Any, p: Problem, mu: Any, free: Any, on: Any, reg: float) -> Any:
    """The KKT matrix of the active set for fixed quadratic multipliers ``mu`` (B, n, n).

    Unknowns ``(x, λ)``; free channel rows ``(I + 2 Σ μ_j Q_j) x + A^T λ``, fixed channel rows
    ``x_c``, active slab rows ``a_k . x`` (with ``-reg λ_k`` so that dependent rows stay
    solvable), inactive slab rows ``λ_k``.
    """
    B, C = free.shape
    eye = _eye(xp, C, free)[None, :, :]
    hess = xp.broadcast_to(eye, (B, C, C))
    for j, qd in enumerate(p.quads):
        hess = hess + (2.0 * mu[:, j])[:, None, None] * qd.Q[None, :, :]
    top = free[:, :, None] * hess + (1.0 - free)[:, :, None] * eye
    if not p.m:
        return top
    top = xp.concat([top, free[:, :, None] * xp.matrix_transpose(p.A)[None, :, :]], axis=2)
    bottom = xp.concat([on[:, :, None] * p.A[None, :, :], _diag(xp, (1.0 - on) - reg * on)], axis=2)
    return xp.concat([top, bottom], axis=1)


def _kkt_solve(xp, y, p, mu, fix, side, reg):
    """``(x, λ, K)`` of the active set for fixed ``mu``: one solve and one refinement step."""
    free = xp.astype(fix == 0, y.dtype)
    goal_x = xp.where(fix > 0, _finite(xp, p.U), xp.where(fix < 0, _finite(xp, p.L), 0.0))
    rhs_x = y
    for j, qd in enumerate(p.quads):
        rhs_x = rhs_x - mu[:, j : j + 1] * qd.c
    parts = [free * rhs_x + (1.0 - free) * goal_x]
    if p.m:
        on = xp.astype(side != 0, y.dtype)
        parts.append(on * xp.where(side > 0, _finite(xp, p.u), _finite(xp, p.l)))
    else:
        on = None
    rhs = xp.concat(parts, axis=1)  # (B, n)
    K = _kkt_matrix(xp, p, mu, free, on, reg)
    exact = _kkt_matrix(xp, p, mu, free, on, 0.0) if p.m else K
    z = xp.linalg.solve(K, rhs[:, :, None])[:, :, 0]
    if p.m:  # refinement against the unregularised system
        res = rhs - xp.matmul(exact, z[:, :, None])[:, :, 0]
        z = z + xp.linalg.solve(K, res[:, :, None])[:, :, 0]
    C = y.shape[1]
    x = xp.where(fix > 0, _finite(xp, p.U), xp.where(fix < 0, _finite(xp, p.L), z[:, :C]))
    lam = z[:, C:] if p.m else xp.zeros((y.shape[0], 0), dtype=y.dtype)
    return x, lam, K, free


def _solve_active(xp, y, p, mu, fix, side, act, scale, reg, newton):
    """The exact solution of the active set: linear KKT solves inside Newton's method on the
    active quadratic multipliers (``φ_j(μ) = q_j(x(μ)) - b_j = 0``; safeguarded to stay >= 0).
    Each stream stops on its own, converged or without progress: a batch's slowest stream
    never cuts another's iterations short (one left the others uncertified, and a feasible
    stream was called infeasible in a batch but projected alone)."""
    B, C = y.shape
    best = xp.full((B,), math.inf, dtype=y.dtype)
    stall = xp.zeros((B,), dtype=y.dtype)
    going = stall == 0  # (B,): streams whose multipliers still move
    for _ in range(newton if p.q else 1):
        x, lam, K, free = _kkt_solve(xp, y, p, mu, fix, side, reg)
        if not p.q:
            return x, lam, mu
        on_q = xp.astype(act != 0, y.dtype)
        G = xp.stack([_quad_grad(xp, x, qd) for qd in p.quads], axis=1)  # (B, q, C)
        vals = xp.stack([_quad_value(xp, x, qd) for qd in p.quads], axis=-1)  # (B, q)
        phi = on_q * (vals - _finite(xp, p.qb))  # (B, q)
        size = xp.abs(vals) + xp.abs(_finite(xp, p.qb)) + 1.0
        worst = xp.max(xp.abs(phi) / size, axis=-1)  # (B,)
        stall = xp.where(worst > 0.5 * best, stall + 1.0, 0.0)
        best = xp.minimum(best, worst)
        # converged, or no progress: rounding level, or an active set without a solution
        going = going & (worst > 4e-16) & (stall < 3.0)
        if not _any(xp, going):
            break
        rhs = -free[:, :, None] * xp.matrix_transpose(G)  # (B, C, q): d/dμ_j of the x rows
        if p.m:
            rhs = xp.concat([rhs, xp.zeros((y.shape[0], p.m, p.q), dtype=y.dtype)], axis=1)
        dx = xp.linalg.solve(K, rhs)[:, :C, :]  # (B, C, q)
        # each equation in units of its own bound, so that the damping below is relative: a
        # ball of radius 1e-2 (|dq/dμ| ~ 1e-6) had every Newton step halved by it
        unit = xp.maximum(xp.maximum(xp.abs(vals), xp.abs(_finite(xp, p.qb))), 1e-300)  # (B, q)
        jac = on_q[:, :, None] * xp.matmul(G, dx) / unit[:, :, None] + _diag(xp, 1.0 - on_q)
        # Levenberg-Marquardt damping: a quadratic whose value the other active constraints pin
        # down (a zero column) gets no step instead of an infinite one
        jt = xp.matrix_transpose(jac)
        jtj = xp.matmul(jt, jac)
        damp = 1e-12 * (1.0 + xp.sum(xp.sum(jtj * jtj, axis=-1), axis=-1))
        normal = jtj + damp[:, None, None] * _eye(xp, p.q, y)[None, :, :]
        step = xp.linalg.solve(normal, -xp.matmul(jt, (phi / unit)[:, :, None]))[:, :, 0]
        new = mu + on_q * step
        mu = xp.where(going[:, None], xp.where(new < 0.0, 0.25 * mu, new), mu)
    return x, lam, mu


def _proposals(xp, y, p, x, lam, mu, fix, side, act, eq):
    """The primal-dual active-set update: new masks, and a score (B, C+m+q) for each change
    (a wrong-sign multiplier or a violated constraint; 0 where nothing changes)."""
    s = x - y  # stationarity without the box: nu = -s on fixed channels
    if p.m:
        s = s + xp.matmul(lam, p.A)
    grads = [_quad_grad(xp, x, qd) for qd in p.quads]
    for j, g in enumerate(grads):
        s = s + mu[:, j : j + 1] * g
    scale_x = xp.maximum(xp.abs(_finite(xp, p.U)) + xp.abs(_finite(xp, p.L)), 1.0)
    drop = ((fix > 0) & (s > 0)) | ((fix < 0) & (s < 0))
    over, under = (x - p.U) / scale_x, (p.L - x) / scale_x
    new_fix = xp.where(drop, 0.0, fix)
    new_fix = xp.where((new_fix == 0) & (over > 1e-13), 1.0, new_fix)
    new_fix = xp.where((new_fix == 0) & (under > 1e-13), -1.0, new_fix)
    new_fix = xp.where(p.L == p.U, 1.0, new_fix)
    score = [xp.where(new_fix != fix, xp.where(drop, xp.abs(s), xp.maximum(over, under)), 0.0)]
    new_side = new_act = None
    if p.m:
        t = _rows_dot(xp, x, p.A)
        size = xp.maximum(_rows_dot(xp, xp.abs(x), xp.abs(p.A)), 1.0)
        drop = ((side > 0) & (lam < 0)) | ((side < 0) & (lam > 0))
        over, under = (t - p.u) / size, (p.l - t) / size
        new_side = xp.where(drop, 0.0, side)
        new_side = xp.where((new_side == 0) & (over > 1e-13), 1.0, new_side)
        new_side = xp.where((new_side == 0) & (under > 1e-13), -1.0, new_side)
        new_side = xp.where(eq, 1.0, new_side)
        change = xp.where(drop, xp.abs(lam), xp.maximum(over, under))
        score.append(xp.where(new_side != side, change, 0.0))
    if p.q:
        vals = xp.stack([_quad_value(xp, x, qd) for qd in p.quads], axis=-1)
        gap = (vals - p.qb) / xp.maximum(xp.abs(_finite(xp, p.qb)) + xp.abs(vals), 1.0)
        new_act = xp.where((act > 0) & (gap < -1e-13), 0.0, act)  # cannot reach its bound
        new_act = xp.where((new_act == 0) & (gap > 1e-13), 1.0, new_act)
        score.append(xp.where(new_act != act, xp.abs(gap), 0.0))
        movable = xp.where(p.L == p.U, 0.0, fix)  # an equality channel stays fixed
        new_fix, score[0] = _release(xp, grads, gap, movable, act, new_fix, score)
    return new_fix, new_side, new_act, xp.concat(score, axis=1)


def _release(xp, grads, gap, fix, act, new_fix, score):
    """Box channels to release where nothing else changes but an active quadratic stays
    violated: the fixed channels keep it out of reach, so its multiplier would be infinite, and
    in that limit a fixed channel's box multiplier takes the sign of the quadratic's slope; the
    channels whose release lowers it leave their bounds (a far prediction fixed every channel
    at a box corner outside a ball, and Dykstra crept up on the ball's multiplier for thousands
    of cycles before the set was called empty). ``fix``: the box's mask, 0 on channels that
    must stay as they are. Returns the box's new masks and scores."""
    none = xp.all(score[0] <= 0, axis=-1)  # (B,): no change proposed
    for v in score[1:]:
        none = none & xp.all(v <= 0, axis=-1)
    release = xp.zeros_like(fix) > 0
    for j, g in enumerate(grads):
        out = (act[:, j : j + 1] > 0) & (gap[:, j : j + 1] > 1e-13) & none[:, None]
        release = release | (out & (((fix > 0) & (g > 0)) | ((fix < 0) & (g < 0))))
    slope = xp.zeros_like(fix)
    for g in grads:
        slope = xp.maximum(slope, xp.abs(g))
    return xp.where(release, 0.0, new_fix), xp.where(release, slope, score[0])


def polish(xp, y, p, st: _State, scale, *, rounds: int = 12, newton: int = 30):
    """Exact solution of the active set guessed from the Dykstra state, corrected primal-dual
    active-set style (all changes at once for a few rounds, then the largest one per round,
    which cannot cycle as easily); returns ``(x, λ, μ)`` (the caller certifies them)."""
    B, C = y.shape
    mu = _quad_multipliers(xp, st, p)
    fix = xp.sign(st.pbox)
    fix = xp.where(p.L == p.U, 1.0, fix)
    eq = side = act = None
    if p.m:
        lam0 = xp.concat(st.lam, axis=-1)
        eq = p.l == p.u
        side = xp.where(eq, 1.0, xp.sign(lam0))
    if p.q:
        act = xp.astype(mu > 0, y.dtype)
    n = C + p.m + p.q
    pos = xp.arange(n)[None, :]
    for r in range(rounds):
        x, lam, mu = _solve_active(xp, y, p, mu, fix, side, act, scale, 1e-13, newton)
        new_fix, new_side, new_act, score = _proposals(xp, y, p, x, lam, mu, fix, side, act, eq)
        if not _any(xp, score > 0):
            break
        if r >= 4:  # one change per stream: the largest
            pick = (pos == xp.argmax(score, axis=-1)[:, None]) & (score > 0)
        else:
            pick = score > 0
        fix = xp.where(pick[:, :C], new_fix, fix)
        if p.m:
            side = xp.where(pick[:, C : C + p.m], new_side, side)
        if p.q:
            act = xp.where(pick[:, C + p.m :], new_act, act)
            mu = xp.where(act == 0, 0.0, mu)
    return x, lam, mu


__all__ = ["polish"]
