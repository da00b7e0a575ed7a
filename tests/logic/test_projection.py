"""The projection: closed forms, an independent solver, and properties on random constraint sets."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kizzasi_lite.backends import to_numpy
from kizzasi_lite.errors import GuardrailInfeasibleError
from kizzasi_lite.logic import GuardrailSet, Linear, Quadratic, Range
from tests.conftest import assert_close

FEAS = 1e-9  # the guarantee: relative violation of every constraint


# ------------------------------------------------------------------------------ checking
def rel_violation(con, y):
    """Independent relative violation of one constraint at one point ``y`` (numpy, float64)."""
    y = np.asarray(y, dtype=np.float64)
    if isinstance(con, Range):
        ch = list(con.channel) if con.channel is not None else list(range(y.size))
        v = [
            max(con.lo - y[c], y[c] - con.hi, 0.0) / max(1.0, abs(con.lo), abs(con.hi))
            for c in ch
            if True
        ]
        return max(v)
    if isinstance(con, Linear):
        ch = list(con.channels) if con.channels is not None else list(range(y.size))
        a = np.array(con.a)
        t = a @ y[ch]
        lo, hi = con.slab()
        scale = max(1.0, abs(con.b), float(np.abs(a * y[ch]).sum()))
        return max(t - hi, lo - t, 0.0) / scale
    if isinstance(con, Quadratic):
        ch = list(con.channels) if con.channels is not None else list(range(y.size))
        Q, c = np.array(con.Q), np.array(con.c)
        q = y[ch] @ Q @ y[ch]
        lin = c @ y[ch]
        return max(q + lin - con.b, 0.0) / max(1.0, abs(con.b), abs(q) + abs(lin))
    raise TypeError(con)


def worst(rails, y):
    y = np.atleast_2d(to_numpy(y)).astype(np.float64)
    return max((rel_violation(e.constraint, row) for e in rails.entries for row in y), default=0.0)


# --------------------------------------------------------------------- the independent QP
def reference(y, constraints, C):
    """The projection by Clarabel (interior point; second-order cones for quadratics)."""
    clarabel = pytest.importorskip("clarabel")
    sparse = pytest.importorskip("scipy.sparse")
    eq_a, eq_b, in_a, in_b, socs = [], [], [], [], []
    for con in constraints:
        if isinstance(con, Range):
            for ch in con.channel if con.channel is not None else range(C):
                e = np.eye(C)[ch]
                if math.isfinite(con.hi):
                    in_a.append(e), in_b.append(con.hi)
                if math.isfinite(con.lo):
                    in_a.append(-e), in_b.append(-con.lo)
        elif isinstance(con, Linear):
            a = np.zeros(C)
            a[list(con.channels or range(C))] = con.a
            lo, hi = con.slab()
            if lo == hi:
                eq_a.append(a), eq_b.append(hi)
            else:
                in_a.append(a), in_b.append(hi)
                if math.isfinite(lo):
                    in_a.append(-a), in_b.append(-lo)
        else:  # x'Qx + c.x <= b, Q positive definite: ||R (x - x0)|| <= sqrt(rho)
            ch = list(con.channels or range(C))
            Q, c = np.array(con.Q), np.array(con.c)
            x0 = -0.5 * np.linalg.solve(Q, c)
            rho = con.b + x0 @ Q @ x0
            R = np.zeros((len(ch), C))
            R[:, ch] = np.linalg.cholesky(Q).T
            rows = np.vstack([np.zeros(C), -R])
            rhs = np.concatenate([[math.sqrt(rho)], -np.linalg.cholesky(Q).T @ x0])
            socs.append((rows, rhs))
    blocks, rhs, cones = [], [], []
    if eq_a:
        blocks.append(np.array(eq_a)), rhs.append(np.array(eq_b))
        cones.append(clarabel.ZeroConeT(len(eq_a)))
    if in_a:
        blocks.append(np.array(in_a)), rhs.append(np.array(in_b))
        cones.append(clarabel.NonnegativeConeT(len(in_a)))
    for rows, r in socs:
        blocks.append(rows), rhs.append(r), cones.append(clarabel.SecondOrderConeT(C + 1))
    s = clarabel.DefaultSettings()
    s.verbose = False
    s.tol_gap_abs = s.tol_gap_rel = s.tol_feas = 1e-10
    s.max_iter = 400
    out = clarabel.DefaultSolver(
        sparse.csc_matrix(np.eye(C)),
        -np.asarray(y, dtype=np.float64),
        sparse.csc_matrix(np.vstack(blocks)),
        np.concatenate(rhs),
        cones,
        s,
    ).solve()
    x, status = np.array(out.x), str(out.status)
    if socs:  # interior-point answers on cones are good to ~1e-5: finish with SQP from there
        x = _refine(np.asarray(y, dtype=np.float64), constraints, C, x)
    return x, status


def _refine(y, constraints, C, start):
    """SciPy's SLSQP from ``start`` (quadratic convergence near the answer)."""
    optimize = pytest.importorskip("scipy.optimize")
    cons, bounds = [], [[None, None] for _ in range(C)]
    for con in constraints:
        if isinstance(con, Range):
            for ch in con.channel if con.channel is not None else range(C):
                lo, hi = bounds[ch]
                bounds[ch] = [
                    con.lo if lo is None else max(lo, con.lo),
                    con.hi if hi is None else min(hi, con.hi),
                ]
        elif isinstance(con, Linear):
            a = np.zeros(C)
            a[list(con.channels or range(C))] = con.a
            lo, hi = con.slab()
            if lo == hi:
                cons.append(
                    {"type": "eq", "fun": lambda x, a=a, h=hi: a @ x - h, "jac": lambda x, a=a: a}
                )
                continue
            cons.append(
                {"type": "ineq", "fun": lambda x, a=a, h=hi: h - a @ x, "jac": lambda x, a=a: -a}
            )
            if math.isfinite(lo):
                cons.append(
                    {"type": "ineq", "fun": lambda x, a=a, v=lo: a @ x - v, "jac": lambda x, a=a: a}
                )
        else:
            ch = list(con.channels or range(C))
            Q, c = np.zeros((C, C)), np.zeros(C)
            Q[np.ix_(ch, ch)], c[ch] = con.Q, con.c
            cons.append(
                {
                    "type": "ineq",
                    "fun": lambda x, Q=Q, c=c, b=con.b: b - x @ Q @ x - c @ x,
                    "jac": lambda x, Q=Q, c=c: -(2 * Q @ x + c),
                }
            )
    bounds = [(None if lo == -np.inf else lo, None if hi == np.inf else hi) for lo, hi in bounds]
    out = optimize.minimize(
        lambda x: 0.5 * np.sum((x - y) ** 2),
        start,
        jac=lambda x: x - y,
        bounds=bounds,
        constraints=cons,
        method="SLSQP",
        options={"ftol": 1e-16, "maxiter": 500},
    )
    return out.x


def random_set(rng, C, *, quads=True):
    """A feasible random constraint set around a random point, and that point."""
    x0 = rng.uniform(-1, 1, C)
    cons = []
    for ch in range(C):
        if rng.uniform() < 0.7:
            lo, hi = x0[ch] - rng.uniform(0, 1), x0[ch] + rng.uniform(0, 1)
            cons.append(Range(lo if rng.uniform() < 0.8 else -np.inf, hi, channel=ch))
    for _ in range(rng.integers(0, 4)):
        a = rng.normal(size=C)
        t = float(a @ x0)
        if rng.uniform() < 0.25:
            cons.append(Linear(a.tolist(), t, equality=True, tol=float(rng.uniform(0, 0.2))))
        else:
            cons.append(Linear(a.tolist(), t + float(rng.uniform(0, 0.5))))
    if quads and rng.uniform() < 0.6:
        V = np.linalg.qr(rng.normal(size=(C, C)))[0]
        Q = V @ np.diag(rng.uniform(0.5, 2.0, C)) @ V.T
        Q = (Q + Q.T) / 2
        c = rng.normal(size=C) * 0.3
        cons.append(
            Quadratic(Q.tolist(), c.tolist(), float(x0 @ Q @ x0 + c @ x0) + rng.uniform(0, 1))
        )
    return cons, x0


# ---------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_box_is_a_clip(xp, dtype):
    rails = GuardrailSet().add([Range(-1.0, 1.0, channel=0), Range(0.0, 0.5, channel=2)])
    y = xp.asarray([[2.0, 7.0, -3.0], [0.5, -9.0, 0.25]], dtype=getattr(xp, dtype))
    out, report = rails.enforce(y)
    assert_close(
        out, xp.asarray([[1.0, 7.0, 0.0], [0.5, -9.0, 0.25]], dtype=getattr(xp, dtype)), xp=xp
    )
    assert report.status == ["projected", "feasible"]
    assert report.active[0] == [
        "guardrail_0/range[x0: -1.0..1.0]",
        "guardrail_0/range[x2: 0.0..0.5]",
    ]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_half_space_and_ball_closed_forms(xp, dtype):
    dt = getattr(xp, dtype)
    a, b = np.array([1.0, 2.0, -1.0]), 1.0
    y = np.array([[3.0, 1.0, 0.5], [-1.0, 0.0, 0.0]])
    out, _ = GuardrailSet().add(Linear(a.tolist(), b)).enforce(xp.asarray(y, dtype=dt))
    expect = y - np.maximum(y @ a - b, 0)[:, None] * a / (a @ a)
    assert_close(out, xp.asarray(expect, dtype=dt), xp=xp)
    ball = Quadratic(np.eye(3).tolist(), [-2.0, 0.0, 0.0], 0.0)  # ||x - e1||^2 <= 1
    out, _ = GuardrailSet().add(ball).enforce(xp.asarray(y, dtype=dt))
    center = np.array([1.0, 0.0, 0.0])
    d = y - center
    expect = center + d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1.0)
    assert_close(out, xp.asarray(expect, dtype=dt), xp=xp)


def test_equality_constraint_is_met_exactly(xp):
    rails = GuardrailSet().add([Linear([1.0, 1.0, 1.0], 1.0, equality=True), Range(0, 1)])
    y = xp.asarray([[0.9, 0.8, -0.3], [5.0, 5.0, 5.0]], dtype=xp.float64)
    out, _ = rails.enforce(y)
    assert worst(rails, out) <= FEAS
    # the simplex projection of (0.9, 0.8, -0.3): shift by t, clip at 0
    assert_close(out[0, :], xp.asarray([0.55, 0.45, 0.0], dtype=xp.float64), atol=1e-12)


# ------------------------------------------------------------------- the independent solver
@pytest.mark.parametrize("seed", range(16))
def test_matches_an_independent_solver(seed):
    rng = np.random.default_rng(seed)
    C = int(rng.integers(2, 6))
    cons, _ = random_set(rng, C)
    rails = GuardrailSet().add(cons)
    y = rng.normal(size=(6, C)) * 2.0
    out, report = rails.enforce(y)
    assert worst(rails, out) <= FEAS
    for b in range(y.shape[0]):
        ref, status = reference(y[b], cons, C)
        assert status in ("Solved", "AlmostSolved"), status
        np.testing.assert_allclose(out[b], ref, atol=1e-6)
        assert report.error_bound[b] <= 1e-6


# -------------------------------------------------------------------------- properties
@st.composite
def constraint_sets(draw):
    C = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    cons, x0 = random_set(np.random.default_rng(seed), C, quads=draw(st.booleans()))
    ys = draw(
        st.lists(
            st.lists(st.floats(-4, 4, allow_nan=False), min_size=C, max_size=C),
            min_size=1,
            max_size=4,
        )
    )
    return cons, x0, np.array(ys)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(constraint_sets())
def test_random_feasible_sets_never_yield_a_violation(case):
    cons, x0, y = case
    rails = GuardrailSet().add(cons)
    out, report = rails.enforce(y)
    assert worst(rails, out) <= FEAS
    again, report2 = rails.enforce(out)  # idempotent: an answer is feasible, so not moved
    assert np.array_equal(again, out)
    assert report2.status == ["feasible"] * len(y)
    inside, report3 = rails.enforce(x0[None, :])  # a feasible point is never moved
    assert np.array_equal(inside, x0[None, :]) and report3.distance == [0.0]
    moved = np.linalg.norm(out - y, axis=1)
    np.testing.assert_allclose(report.distance, moved, rtol=1e-12, atol=1e-15)
    assert np.all(moved <= np.linalg.norm(y - x0, axis=1) + 1e-9)  # x0 is feasible, x is nearest


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_backend_and_dtype(xp, dtype):
    rng = np.random.default_rng(7)
    cons, _ = random_set(rng, 3)
    rails = GuardrailSet().add(cons)
    y_np = rng.normal(size=(4, 3)) * 2
    expect, _ = rails.enforce(y_np)
    out, _ = rails.enforce(xp.asarray(y_np, dtype=getattr(xp, dtype)))
    assert_close(out, xp.asarray(expect, dtype=getattr(xp, dtype)), xp=xp, rtol=1e-6, atol=1e-6)
    limit = FEAS if dtype == "float64" else FEAS  # float32 answers are rounded towards the set
    assert worst(rails, out) <= limit


def test_infeasible_sets_name_the_conflict():
    rails = GuardrailSet(policy="prioritize")
    rails.add(Linear([1.0, 1.0], 0.0), name="strong", priority=5)
    rails.add(Linear([-1.0, -1.0], -1.0), name="weak", priority=1)
    rails.add(Range(-5, 5), name="box")
    assert rails.static_conflicts == [
        "strong/linear[1.0*x0 + 1.0*x1 <= 0.0]",
        "weak/linear[-1.0*x0 + -1.0*x1 <= -1.0]",
    ]
    out, report = rails.enforce(np.array([[3.0, 3.0]]))
    assert report.status == ["prioritized"]
    assert report.unsatisfied == [["weak/linear[-1.0*x0 + -1.0*x1 <= -1.0]"]]
    assert report.active == [["strong/linear[1.0*x0 + 1.0*x1 <= 0.0]"]]
    np.testing.assert_allclose(out, [[0.0, 0.0]], atol=1e-12)  # the projection onto "strong"
    with pytest.raises(GuardrailInfeasibleError, match=r"in conflict: .*<= 0\.0.*<= -1\.0"):
        GuardrailSet().add([Linear([1.0, 1.0], 0.0), Linear([-1.0, -1.0], -1.0), Range(-5, 5)])


def test_infeasible_ball_and_half_space_are_detected():
    ball = Quadratic(np.eye(2).tolist(), None, 1.0)
    with pytest.raises(GuardrailInfeasibleError, match="quadratic.*linear|linear.*quadratic"):
        GuardrailSet().add([ball, Linear([-1.0, 0.0], -2.0)])


def test_a_set_below_float64_resolution_projects_to_its_minimiser_without_overflow():
    """A ball ~1e-6 wide, 360 from the origin, whose data leave it empty once rounded: ``g(t)``
    stays above 0, so Newton's ``t`` grew to inf (overflow, then NaN rows for 100 iterations)."""
    from kizzasi_lite.logic.compiled import _t_cap
    from kizzasi_lite.logic.projection import Quad, project_quad

    ct = [721.27345381, 721.27345381]  # x'x + ct.x: its minimiser is -ct / 2
    qd = Quad(
        Q=np.eye(2), c=np.array(ct), V=np.eye(2), w=np.ones(2), ct=np.array(ct), positive=True,
        t_cap=_t_cap([1.0, 1.0], ct),
    )  # fmt: skip
    w = np.array([[-360.63672567, -360.63672567]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warning
        x = project_quad(np, w, qd, np.array([[-260117.69807195]]))
    np.testing.assert_allclose(x, [[-ct[0] / 2, -ct[1] / 2]], rtol=1e-15)
    assert _t_cap([1.0, 0.0], [1.0, 2.0]) == math.inf  # unbounded below along w = 0
    assert _t_cap([1.0, 0.0], [1.0, 0.0]) == 1e20


def test_a_ball_narrower_than_float32_is_refused_without_warnings():
    """The property test's slowest case (tests/logic/test_rounding.py): it took ~4 s in NaN rows."""
    center, size = -360.63672743467, 10.0**-8.312430558449936 * 361.63672743467
    mid = np.full(2, center) + 0.3 * size
    rails = GuardrailSet(max_iter=300).add(
        [
            Range(center - size, center + size),
            Quadratic(np.eye(2).tolist(), (-2.0 * mid).tolist(), float(2 * size**2 - mid @ mid)),
        ]
    )
    y = (np.full(2, center) + 1.035 * size * np.arange(1, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(GuardrailInfeasibleError, match="no float32 value"):
            rails.enforce(y)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.floats(1.5, 1e4))
def test_an_ellipsoid_by_its_secular_equation_equals_newton_on_the_constraint(seed, C, far):
    """Two iterations of one projection agree: Newton on the secular equation (a bounded
    ellipsoid's) and on the constraint's value (every quadratic's), the latter given 10x the
    steps. The secular one is done within 6 steps from points up to 1e4 times the set's size."""
    from dataclasses import replace

    from kizzasi_lite.logic.compiled import _t_cap
    from kizzasi_lite.logic.projection import Quad, project_quad

    rng = np.random.default_rng(seed)
    m = rng.standard_normal((C, C))
    Q = m @ m.T + 0.1 * np.eye(C)
    w, V = np.linalg.eigh(Q)
    c = rng.standard_normal(C)
    centre = -np.linalg.solve(Q, c) / 2
    b = np.array([[1.0 + centre @ Q @ centre + c @ centre]])  # (x - centre)'Q(x - centre) <= 1
    qd = Quad(Q=Q, c=c, V=V, w=w, ct=V.T @ c, positive=True, t_cap=_t_cap(list(w), list(V.T @ c)))
    y = centre + far * rng.standard_normal((3, C)) / np.sqrt(w.min())
    secular = project_quad(np, y, qd, b, max_newton=6)
    value = project_quad(np, y, replace(qd, positive=False), b, max_newton=60)
    np.testing.assert_allclose(secular, value, rtol=1e-9, atol=1e-9)

    def q(x):
        return np.einsum("bi,ij,bj->b", x, Q, x) + x @ c

    out = q(y) > b[0, 0]  # projected onto the boundary; the others stay where they are
    np.testing.assert_allclose(q(secular)[out], b[0, 0], rtol=1e-9, atol=1e-9 * abs(b[0, 0]))
    np.testing.assert_array_equal(secular[~out], y[~out])


def test_one_set_without_a_box_is_projected_in_one_cycle_without_polishing(monkeypatch):
    """A ball or a half-space alone: Dykstra's first cycle is the exact projection, certified as
    it is; the active-set polish runs only where sets meet (here, a ball inside a box)."""
    import kizzasi_lite.logic.polish as polish_module

    calls = []
    real = polish_module.polish
    monkeypatch.setattr(polish_module, "polish", lambda *a: calls.append(1) or real(*a))
    y = np.array([[3.0, 4.0]])
    for con, at in ((Quadratic(np.eye(2).tolist(), None, 1.0), [0.6, 0.8]),
                    (Linear([1.0, 1.0], 1.0), [0.0, 1.0])):  # fmt: skip
        out, report = GuardrailSet().add(con).enforce(y)
        np.testing.assert_allclose(out, [at], rtol=1e-12)
        assert report.status == ["projected"]
    assert calls == []
    GuardrailSet().add([Quadratic(np.eye(2).tolist(), None, 1.0), Range(-0.7, 0.7)]).enforce(y)
    assert calls


def test_a_box_that_cuts_a_small_ball_is_projected_and_certified():
    """Box [-0.008, 0.008]^4 and the ball of radius 0.01: the polish's Newton on the ball's
    multiplier had every step halved by an absolute damping (|dq/dμ| ~ 1e-6 here), so these
    came back "uncertified" (error bounds up to 3e-3) after ~4000 Dykstra iterations."""
    rails = GuardrailSet().add([Range(-0.008, 0.008), Quadratic(np.eye(4).tolist(), None, 1e-4)])
    y = np.array([[-0.70373523, -1.2654215, -0.62327445, 0.04132598],
                  [-2.3250308, -0.21879166, -1.245911, -0.7322674]])  # fmt: skip
    out, report = rails.enforce(y)
    assert report.status == ["projected", "projected"] and max(report.error_bound) <= 1e-9
    rest = y[1, 1:] * 0.006 / np.linalg.norm(y[1, 1:])  # x0 at its bound, the rest on the ball
    np.testing.assert_allclose(out[1], [-0.008, *rest], rtol=1e-9)


def _box_ball_projection(y, lo, hi, center, r):
    """The projection of ``y`` onto [lo, hi]^C ∩ {|x - center| <= r}, independently: the KKT
    point is ``x(μ) = clip((y + μ center) / (1 + μ), lo, hi)`` with ``|x(μ) - center|``
    decreasing in ``μ >= 0``; its root by bisection (to float64 resolution)."""

    def x_of(mu):
        return np.clip((y + mu * center) / (1.0 + mu), lo, hi)

    if np.linalg.norm(x_of(0.0) - center) <= r:
        return x_of(0.0)
    a, b = 0.0, 1.0
    while np.linalg.norm(x_of(b) - center) > r:
        a, b = b, 2.0 * b
    for _ in range(200):
        mid = 0.5 * (a + b)
        if mid in (a, b):
            break
        a, b = (mid, b) if np.linalg.norm(x_of(mid) - center) > r else (a, mid)
    return x_of(b)


def test_a_far_prediction_onto_a_box_cutting_a_small_ball_is_projected():
    """A prediction ~2000 times the set's size away, onto a box whose nearest corner lies outside
    a ball: every channel came out fixed at that corner, where the ball cannot be reached, so
    the polish found nothing to change and Dykstra crept up on the ball's multiplier (0.13,
    0.38, 0.88, ... of the ~1e3 needed) until its 4000 cycles were spent, and the feasible set
    was reported empty (GuardrailInfeasibleError after ~0.9 s). The channels whose release
    lowers the ball's value now leave the corner."""
    lo, hi, r = -0.015498624931204647, 0.023404661933947014, 0.03548695447042515
    c = np.array([-0.01490306, -0.02244627, 0.00207175, 0.02123003])
    y = np.array([45.89914222, -34.22688045, 68.13628922, 66.4628798])
    rails = GuardrailSet().add([Range(lo, hi), Quadratic(np.eye(4).tolist(), (-2 * c).tolist(),
                                                         r * r - c @ c)])  # fmt: skip
    out, report = rails.enforce(y)
    assert report.status == ["projected"] and report.error_bound[0] <= 1e-9
    np.testing.assert_allclose(out, _box_ball_projection(y, lo, hi, c, r), rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 6), st.floats(-2.0, 1.0), st.floats(0.0, 3.5), st.integers(0, 2**32 - 1))
def test_box_and_ball_projections_equal_the_independent_solution(c, log_r, log_far, seed):
    """Any box cutting a ball (its nearest point to the center well inside the ball), and a
    prediction up to ~3000 times the set's size away: projected, certified, and equal to the
    bisection on the ball's multiplier; never called infeasible."""
    rng = np.random.default_rng(seed)
    r = 10.0**log_r
    lo, hi = -r * rng.uniform(0.2, 1.0), r * rng.uniform(0.2, 1.0)
    center = rng.uniform(lo, hi, size=c) * 1.5  # often outside the box
    if np.linalg.norm(np.clip(center, lo, hi) - center) >= 0.9 * r:  # then the box may miss it
        center = np.clip(center, lo, hi)
    y = center + rng.normal(size=c) * r * 10.0**log_far
    rails = GuardrailSet().add([Range(lo, hi), Quadratic(np.eye(c).tolist(),
                                (-2 * center).tolist(), r * r - center @ center)])  # fmt: skip
    out, report = rails.enforce(y)
    assert report.status[0] in ("projected", "feasible")
    assert report.error_bound[0] <= 1e-7 * (1.0 + np.abs(y).max())
    expect = _box_ball_projection(y, lo, hi, center, r)
    np.testing.assert_allclose(out, expect, rtol=0, atol=1e-7 * (1.0 + np.abs(y).max()))


# Sets found by a seeded random search (tests/logic/data/hard_projections.json says how): boxes
# cut by one or two ellipsoids, sometimes a half-space, predictions far outside. On each the
# polished Dykstra iteration called the feasible set empty or left a stream uncertified, after
# up to 5 s; some only in a batch (the polish's Newton stopped for every stream when one stalled)
HARD = json.loads((Path(__file__).parent / "data" / "hard_projections.json").read_text())["cases"]


def _hard_constraints(case: dict) -> list:
    cons = [Range(a, b, channel=c) for c, (a, b) in enumerate(zip(case["lo"], case["hi"],
                                                                 strict=True))]  # fmt: skip
    cons += [Quadratic(qd["Q"], qd["c"], qd["b"]) for qd in case["quadratics"]]
    if case["half_space"]:
        cons.append(Linear(case["half_space"]["a"], case["half_space"]["b"]))
    return cons


@pytest.mark.parametrize("case", HARD, ids=[c["found"] for c in HARD])
def test_hard_sets_are_projected_certified_and_alike_in_a_batch(case):
    """Every stream projected and certified, as it is when alone, and equal to Clarabel's."""
    cons, y = _hard_constraints(case), np.array(case["y"])
    rails = GuardrailSet().add(cons)
    out, report = rails.enforce(y)
    scale = 1.0 + np.abs(y).max(axis=1)
    assert report.status == ["projected"] * len(y)
    assert all(e <= 1e-7 * s for e, s in zip(report.error_bound, scale, strict=True))
    for b in range(len(y)):
        alone, one = rails.enforce(y[b])
        assert one.status == ["projected"]
        np.testing.assert_allclose(out[b], alone, rtol=0, atol=1e-7 * scale[b])
        ref, status = reference(y[b], cons, y.shape[1])
        np.testing.assert_allclose(out[b], ref, rtol=0, atol=1e-6 * scale[b])


def _problem(rails, y):
    """The batched Problem that ``rails.enforce`` solves for ``y`` (B, C), in float64."""
    from kizzasi_lite.backends import namespace
    from kizzasi_lite.logic.compiled import arrays, problem

    xp = namespace(y)
    comp = rails.compiled(y.shape[1])
    arr = arrays(comp, xp, xp.float64)
    bounds = {k: xp.broadcast_to(arr[k][None, :], y.shape) for k in ("L", "U")}
    return problem(comp, xp, xp.float64, y.shape[0], **bounds, skip=set())


@pytest.mark.parametrize("seed", range(12))
def test_the_interior_point_method_alone_is_certified(xp, seed):
    """The fallback by itself, on random sets (boxes with a pinned channel, equality and
    inequality slabs, an ellipsoid) and predictions near and far: its answers are feasible and
    certified, and equal the polished Dykstra iteration's, on every backend with float64."""
    from kizzasi_lite.logic.interior import interior_point
    from kizzasi_lite.logic.projection import certificate, violation

    if not hasattr(xp, "float64"):
        pytest.skip("no float64 here: the solver works in float64")
    rng = np.random.default_rng(seed)
    C = int(rng.integers(2, 6))
    cons, x0 = random_set(rng, C)
    cons.append(Range(float(x0[0]), float(x0[0]), channel=0))  # x0 = its value, exactly
    rails = GuardrailSet().add(cons)
    y_np = x0 + rng.normal(size=(5, C)) * np.array([[0.5], [2.0], [10.0], [100.0], [1e3]])
    expect, report = rails.enforce(y_np)
    assert report.status == ["projected"] * 5
    y = xp.asarray(y_np, dtype=xp.float64)
    p = _problem(rails, y)
    x, lam, mu = interior_point(xp, y, p)
    bound = to_numpy(certificate(xp, y, x, lam, mu, p)[0])
    scale = 1.0 + np.abs(y_np).max(axis=1)
    assert np.all(to_numpy(violation(xp, x, p)) <= 1e-12)
    assert np.all(bound <= 1e-7 * scale)
    np.testing.assert_allclose(to_numpy(x), expect, rtol=0, atol=1e-7 * scale.max())
