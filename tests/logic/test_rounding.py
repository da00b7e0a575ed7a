"""Guardrails in the output dtype: what ``enforce`` returns satisfies the constraints after it is
rounded to the prediction's dtype (to the set's relative tolerance), or the call follows the
policy for infeasible sets. Never a value outside the set."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kizzasi_lite.backends import to_numpy
from kizzasi_lite.errors import GuardrailInfeasibleError
from kizzasi_lite.logic import GuardrailSet, Linear, Quadratic, Range, RateLimit

TOL = 1e-9  # GuardrailSet's default tolerance
BUDGET = 300  # solver iterations: tiny sets converge slowly, and the property holds either way


def relative_violation(con, x: np.ndarray, prev: np.ndarray | None) -> float:
    """The documented measure (kizzasi_lite.logic.projection.violation), in float64."""
    worst = 0.0
    if isinstance(con, Range):
        for v in x:
            if math.isfinite(con.lo):
                worst = max(worst, (con.lo - v) / max(1.0, abs(con.lo)))
            if math.isfinite(con.hi):
                worst = max(worst, (v - con.hi) / max(1.0, abs(con.hi)))
    elif isinstance(con, RateLimit):
        for v, p in zip(x, prev, strict=True):
            hi, lo = p + con.delta, p - con.delta
            worst = max(worst, (v - hi) / max(1.0, abs(hi)), (lo - v) / max(1.0, abs(lo)))
    elif isinstance(con, Linear):
        a = np.asarray(con.a)
        t, size = float(a @ x), float(np.abs(a) @ np.abs(x))
        worst = max(worst, (t - con.b) / max(1.0, abs(con.b), size))
    elif isinstance(con, Quadratic):
        Q, c = np.asarray(con.Q), np.asarray(con.c)
        q, lin = float(x @ Q @ x), float(c @ x)
        worst = max(worst, (q + lin - con.b) / max(1.0, abs(con.b), abs(q) + abs(lin)))
    return worst


NARROW = Range(483.6547685821585, 483.6547689548328)  # holds no float32 value


def test_a_range_without_a_float32_value_raises_instead_of_returning_one_outside():
    below = np.float32(483.6547685821585)
    above = np.nextafter(below, np.float32(np.inf))
    assert float(below) < NARROW.lo and float(above) > NARROW.hi
    rails = GuardrailSet().add(NARROW, name="narrow")
    with pytest.raises(GuardrailInfeasibleError) as err:
        rails.enforce(np.array([0.0], dtype=np.float32))
    msg = str(err.value)
    assert "no float32 value" in msg and "narrow/range" in msg and "1e-09" in msg
    out, report = rails.enforce(np.array([0.0]))  # float64 holds values in it
    assert NARROW.lo <= out[0] <= NARROW.hi and report.status == ["projected"]


def test_prioritize_leaves_out_the_constraint_with_no_float32_value():
    rails = GuardrailSet(policy="prioritize")
    rails.add(Range(0.0, 1000.0), name="wide", priority=5)
    rails.add(NARROW, name="narrow", priority=1)
    y = np.array([[0.0], [2000.0]], dtype=np.float32)
    out, report = rails.enforce(y)
    assert out.dtype == np.float32
    assert report.status == ["prioritized", "prioritized"]
    assert report.unsatisfied == [["narrow/" + NARROW.label]] * 2
    np.testing.assert_array_equal(out, [[0.0], [1000.0]])  # 1000 is a float32: exact


def test_a_narrow_range_that_holds_a_float32_value_returns_it():
    v = float(np.float32(483.6547))
    rails = GuardrailSet().add(Range(v - 1e-9, v + 1e-9))
    out, report = rails.enforce(np.array([0.0], dtype=np.float32))
    assert out[0] == np.float32(v) and report.status == ["projected"]


def _check(cons, y, prev):
    """Enforce; the float32 answer satisfies every constraint to TOL, or the call raised."""
    try:
        rails = GuardrailSet(max_iter=BUDGET).add(cons)
    except GuardrailInfeasibleError:
        return None  # rounding of the float64 data made it empty: nothing to enforce
    try:
        out, report = rails.enforce(y, prev)
    except GuardrailInfeasibleError:
        return None
    o = to_numpy(out)
    assert o.dtype == np.float32
    p64 = None if prev is None else prev.astype(np.float64)
    for con in cons:
        assert relative_violation(con, o.astype(np.float64), p64) <= TOL, (con, o, report)
    return out


# log10 of the set's size relative to its position (smaller balls than ~1e-10 of their distance
# from the origin are not representable in float64 data, and only slow the solver down)
tiny = st.floats(-10.0, -1.0)
where = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=15, deadline=None)
@given(where, tiny, st.floats(-3, 3), st.integers(1, 3))
@example(-495.2381358537068, -8.516831536986288, 2.5002229871745376, 1)  # found by fuzzing:
@example(672.1512647839525, -4.026941811451165, 1.3911418266339073, 1)  # ~1e-8 violations
@example(255.23086920999071, -7.311814119068385, -1.0662757687167332, 2)
def test_range_with_a_quadratic_in_float32(center, log_size, push, C):
    size = 10.0**log_size * (1.0 + abs(center))
    c = np.full(C, center)
    mid = c + 0.3 * size  # a ball that cuts the box (not through its corners)
    cons = [
        Range(center - size, center + size),
        Quadratic(np.eye(C).tolist(), (-2.0 * mid).tolist(), float(C * size * size - mid @ mid)),
    ]
    y = (c + push * size * np.arange(1, C + 1)).astype(np.float32)
    _check(cons, y, None)


@settings(max_examples=25, deadline=None)
@given(where, tiny, st.floats(-3, 3), st.integers(1, 2))
@example(476.74803796565016, -4.295636930269371, 2.1444984536094447, 1)  # found by fuzzing
@example(-787.8749118856294, -6.0738566620578585, 2.9269677943783483, 1)
def test_rate_limit_with_a_quadratic_in_float32(center, log_size, push, C):
    size = 10.0**log_size * (1.0 + abs(center))
    prev = np.full(C, center, dtype=np.float32)
    mid = prev.astype(np.float64) + 0.5 * size
    cons = [
        RateLimit(size),
        Quadratic(np.eye(C).tolist(), (-2.0 * mid).tolist(), float(size * size - mid @ mid)),
    ]
    y = (prev + push * size).astype(np.float32)
    _check(cons, y, prev)


@settings(max_examples=60, deadline=None)
@given(where, tiny, st.floats(-3, 3), st.lists(st.floats(-2, 2), min_size=2, max_size=3))
def test_range_with_a_hyperplane_in_float32(center, log_size, push, a):
    if max(abs(v) for v in a) < 1e-3:
        return
    C = len(a)
    size = 10.0**log_size * (1.0 + abs(center))
    c = np.full(C, center)
    cons = [Range(center - size, center + size), Linear(a, float(np.asarray(a) @ c))]
    y = (c + push * size * np.arange(1, C + 1)).astype(np.float32)
    _check(cons, y, None)


@settings(max_examples=15, deadline=None)
@given(where, st.floats(-3.0, 0.0), st.floats(-3, 3))
def test_sets_wider_than_float32_resolution_never_raise(center, log_size, push):
    size = 10.0**log_size * (1.0 + abs(center))
    mid = center + 0.5 * size
    cons = [
        Range(center - size, center + size),
        Quadratic([[1.0]], [-2.0 * mid], float(size * size - mid * mid)),
    ]
    y = np.array([center + push * size], dtype=np.float32)
    out, _ = GuardrailSet().add(cons).enforce(y)
    o = to_numpy(out).astype(np.float64)
    assert all(relative_violation(con, o, None) <= TOL for con in cons)


def test_a_small_ball_far_from_the_origin_keeps_its_float32_points():
    """The inward margin for rounding is what rounding changes in q(y) (its gradient times y),
    not the size of its terms, which cancel here: that margin would empty the ball."""
    prev = np.array([-544.48436091, 312.7167447, -68.18406744], dtype=np.float32)
    delta = 0.08581440024497515
    mid = prev.astype(np.float64) + 0.5 * delta
    cons = [
        RateLimit(delta),
        Quadratic(np.eye(3).tolist(), (-2 * mid).tolist(), delta**2 - mid @ mid),
    ]
    rails = GuardrailSet().add(cons)
    rng = np.random.default_rng(0)
    for _ in range(3):
        y = (prev + rng.normal(size=3) * delta * 10).astype(np.float32)
        out, report = rails.enforce(y, prev)
        assert report.status == ["projected"]
        for con in cons:
            assert relative_violation(con, out.astype(np.float64), prev.astype(np.float64)) <= TOL
