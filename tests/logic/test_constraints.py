"""Constraint types: validation, the builder, violations (and their gradients), serialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizzasi_lite.autodiff import value_and_grad
from kizzasi_lite.backends import get_namespace, namespace, to_numpy
from kizzasi_lite.errors import ConfigError, GuardrailInfeasibleError, InputError, KizzasiError
from kizzasi_lite.logic import (
    BoundType,
    ConstraintBuilder,
    GreaterThan,
    GuardrailSet,
    LessThan,
    Linear,
    Quadratic,
    Range,
    RateLimit,
    TemporalRule,
)
from kizzasi_lite.logic.constraints import constraint_from_dict
from kizzasi_lite.logic.linalg import jacobi_eigh
from tests.conftest import assert_close
from tests.gradcheck import check_grad

EXAMPLES = [
    Range(-1.0, 2.0, channel=0),
    Range(-math.inf, 0.5),
    LessThan(0.25, channel=(0, 2)),
    GreaterThan(-0.5, channel=1),
    RateLimit(0.1),
    RateLimit(0.3, channel=[2]),
    Linear([1.0, -2.0, 0.5], 0.75),
    Linear([1.0, 1.0], 1.0, equality=True, tol=0.1, channels=(0, 2)),
    Quadratic([[2.0, 0.5], [0.5, 1.0]], [0.1, -0.2], 1.5, channels=(1, 2)),
    Quadratic([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], None, 1.0),
    TemporalRule("G(x0 <= 1.0) & G(x1 > 0.9 -> F[0,5] x1 < 0.5)"),
]


def test_constructors_reject_malformed_and_empty_constraints():
    with pytest.raises(GuardrailInfeasibleError, match="lo = 2.0 > hi = 1.0"):
        Range(2.0, 1.0, channel=0)
    with pytest.raises(GuardrailInfeasibleError):
        RateLimit(-0.1)
    with pytest.raises(ConfigError, match="finite"):
        LessThan(float("nan"))
    with pytest.raises(ConfigError, match="channel"):
        Range(0, 1, channel=-1)
    with pytest.raises(ConfigError, match="channel listed twice"):
        Range(0, 1, channel=[1, 1])
    with pytest.raises(ConfigError, match="coefficients for"):
        Linear([1.0, 2.0], 1.0, channels=[0])
    with pytest.raises(GuardrailInfeasibleError):
        Linear([0.0, 0.0], -1.0)
    with pytest.raises(ConfigError, match="positive semi-definite"):
        Quadratic([[1.0, 0.0], [0.0, -1.0]], None, 1.0)
    with pytest.raises(ConfigError, match="symmetric"):
        Quadratic([[1.0, 2.0], [0.0, 1.0]], None, 1.0)
    with pytest.raises(GuardrailInfeasibleError, match="smallest value"):
        Quadratic([[1.0, 0.0], [0.0, 1.0]], [2.0, 0.0], -1.5)  # min is -1
    Quadratic([[1.0, 0.0], [0.0, 1.0]], [2.0, 0.0], -1.0)  # exactly the minimum: one point


def test_builder_keeps_every_bound():
    g = (
        ConstraintBuilder()
        .name("limits")
        .bound(0, BoundType.Range(-1.0, 1.0))
        .bound(1, BoundType.LessThan(2.0))
        .bound(2, BoundType.GreaterThan(-3.0))
        .bound(3, BoundType.Equal(0.5, 0.1))
        .rate_limit(0.1)
        .linear([1.0, 1.0], 1.5, channels=[0, 1])
        .quadratic([[1.0]], None, 4.0, channels=[2])
        .rule("G(x0 <= 0.9)")
        .build()
    )
    assert g.name == "limits"
    assert len(g.constraints) == 8
    assert g.constraints[0] == Range(-1.0, 1.0, channel=0)
    assert g.constraints[1] == LessThan(2.0, channel=1)
    assert g.constraints[3] == Range(0.4, 0.6, channel=3)
    rails = GuardrailSet().add(g)
    y, _ = rails.enforce(np.array([[5.0, 5.0, -5.0, 0.0]]))
    assert np.all(y[0] <= [1.0, 2.0, np.inf, 0.6]) and y[0, 2] >= -2.0 - 1e-12
    assert y[0, 0] + y[0, 1] <= 1.5 + 1e-12 and y[0, 3] >= 0.4


def test_builder_detects_a_conflict_at_build_time():
    b = ConstraintBuilder().name("bad").bound(0, BoundType.Range(0, 1)).linear([1.0], 2.0)
    b.build()  # x0 <= 2 is compatible
    b.add(GreaterThan(1.5, channel=0))
    with pytest.raises(GuardrailInfeasibleError, match="in conflict"):
        b.build()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_violations_are_hinges(xp, dtype):
    dt = getattr(xp, dtype)
    y = xp.asarray([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]], dtype=dt)
    prev = xp.asarray([[1.5, -1.0, 0.0], [0.0, 0.0, 0.0]], dtype=dt)
    cases = {  # constraint: (hinge, squared hinge) per stream; squares are summed per channel
        Range(-1.0, 1.0, channel=0): ([1.0, 0.0], [1.0, 0.0]),
        LessThan(0.0): ([2.5, 0.0], [4.25, 0.0]),
        GreaterThan(-0.5, channel=[1, 2]): ([0.5, 0.0], [0.25, 0.0]),
        RateLimit(0.25): ([0.5, 0.0], [0.125, 0.0]),
        Linear([1.0, 1.0, 1.0], 1.0): ([0.5, 0.0], [0.25, 0.0]),
        Linear([1.0, 0.0, 0.0], 1.0, equality=True, tol=0.5): ([0.5, 0.5], [0.25, 0.25]),
        Quadratic([[1.0, 0.0], [0.0, 1.0]], None, 1.0, channels=[0, 1]): ([4.0, 0.0], [16.0, 0.0]),
    }
    for con, (hinge, squared) in cases.items():
        assert_close(con.violation(y, prev), xp.asarray(hinge, dtype=dt), xp=xp)
        assert_close(con.violation(y, prev, squared=True), xp.asarray(squared, dtype=dt), xp=xp)


def test_rate_violation_of_a_sequence_measures_consecutive_steps(np_xp):
    y = np_xp.asarray([[[0.0], [0.5], [0.6]]])  # (B=1, T=3, C=1)
    v = RateLimit(0.2).violation(y)
    assert_close(v, np_xp.asarray([[0.0, 0.3, 0.0]]))


def test_violations_differentiate_through_autodiff(np_xp):
    rng = np.random.default_rng(0)
    params = {"y": np_xp.asarray(rng.uniform(-2, 2, size=(4, 3)))}
    prev = np_xp.asarray(rng.uniform(-2, 2, size=(4, 3)))
    rails = GuardrailSet(policy="prioritize").add([c for c in EXAMPLES if c.kind != "temporal"])

    def loss(p):
        v = rails.violation(p["y"], prev, squared=True)
        return namespace(v).sum(v)

    check_grad(loss, params, entries=12, rtol=1e-5)
    value, grads = value_and_grad(loss, params)
    assert float(value) > 0 and np.any(to_numpy(grads["y"]) != 0)


@pytest.mark.parametrize("con", EXAMPLES, ids=lambda c: c.kind)
def test_dict_round_trip_is_exact(con):
    data = con.to_dict()
    import json

    back = constraint_from_dict(json.loads(json.dumps(data, allow_nan=False)))
    assert back == con and type(back) is type(con)


def test_unknown_constraint_type_is_named():
    with pytest.raises(ConfigError, match="unknown constraint type 'blob'"):
        constraint_from_dict({"type": "blob"})


def test_channel_mismatch_is_an_input_error():
    rails = GuardrailSet().add(Range(0, 1, channel=4))
    with pytest.raises(InputError, match="channel 4"):
        rails.enforce(np.zeros((1, 3)))
    rails = GuardrailSet().add(Linear([1.0, 1.0], 1.0))
    with pytest.raises(InputError, match="2 coefficients"):
        rails.enforce(np.zeros((1, 3)))


def test_jacobi_eigh_matches_numpy():
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 8):
        m = rng.normal(size=(n, n))
        a = m @ m.T
        w, v = jacobi_eigh(a.tolist())
        w, v = np.array(w), np.array(v)
        np.testing.assert_allclose(v @ np.diag(w) @ v.T, a, atol=1e-12)
        np.testing.assert_allclose(np.sort(w), np.linalg.eigvalsh(a), atol=1e-12)


def test_namespace_of_a_violation_follows_the_input():
    xp = get_namespace("array_api_strict")
    v = Range(0, 1).violation(xp.asarray([[2.0, 3.0]]))
    assert_close(v, xp.asarray([3.0]), xp=xp)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Range(math.inf, math.inf), "finite lo or -inf and a finite hi or inf"),
        (lambda: Range(-math.inf, -math.inf), "finite lo or -inf and a finite hi or inf"),
        (lambda: Range(math.inf, 1.0), "got lo = inf"),
        (lambda: Range(0.0, -math.inf), "hi = -inf"),
        (lambda: Range(math.nan, 1.0), "Range lo must be a number or \\+-inf, not NaN"),
        (lambda: Range(0.0, math.nan), "Range hi must be"),
        (lambda: Range("0", 1.0), "Range lo must be a number, got '0'"),
        (lambda: Range(True, 2.0), "Range lo must be a number, got True"),
        (lambda: Range(0.0, 1.0, channel=1.5), "channel is an index"),
        (lambda: Range(0.0, 1.0, channel="01"), "channel is an index"),
        (lambda: LessThan(math.inf), "LessThan value must be finite"),
        (lambda: GreaterThan(-math.inf), "GreaterThan value must be finite"),
        (lambda: GreaterThan(None), "GreaterThan value must be a number"),
        (lambda: RateLimit(math.nan), "RateLimit delta must be"),
        (lambda: RateLimit("0.1"), "RateLimit delta must be a number"),
        (lambda: Linear([1.0, math.inf], 1.0), "Linear a\\[1\\] must be finite"),
        (lambda: Linear([1.0, 1.0], math.nan), "Linear b must be finite"),
        (lambda: Linear([1.0, 1.0], 1.0, tol=-0.1), "tol must be >= 0"),
        (lambda: Linear([1.0, 1.0], 1.0, tol=math.inf), "Linear tol must be finite"),
        (lambda: Linear([1.0, 1.0], 1.0, equality="no"), "equality must be True or False"),
        (lambda: Linear("ab", 1.0), "Linear a must be a sequence of numbers"),
        (lambda: Linear({"a": 1.0}, 1.0), "Linear a must be a sequence of numbers"),
        (lambda: Linear([[1.0, 2.0]], 1.0), "Linear a\\[0\\] must be a number"),
        (lambda: Quadratic([[1.0, 0.0]], None, 1.0), "Q must be square"),
        (lambda: Quadratic([[1.0, math.nan], [math.nan, 1.0]], None, 1.0), "must be finite"),
        (lambda: Quadratic([[1.0, 0.0], [0.0, 1.0]], [1.0], 1.0), "c has 1 entries"),
        (lambda: Quadratic([[1.0, 0.0], [0.0, 1.0]], None, math.inf), "b must be finite"),
        (lambda: Quadratic([[0.0, 1.0], [1.0, 0.0]], None, 1.0), "positive semi-definite"),
        (lambda: TemporalRule("G(x0 <= 1)", enforce="yes"), "enforce must be True or False"),
    ],
)
def test_constructors_reject_non_finite_and_mistyped_parameters(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_constructors_still_take_numpy_numbers_and_open_ends():
    assert Range(np.float32(0.5), np.int64(2)).bounds() == (0.5, 2.0)
    assert Range(-math.inf, math.inf, channel=np.int64(1)).channel == (1,)
    assert RateLimit(math.inf).delta == math.inf  # no limit: allowed
    assert Linear(np.array([1.0, 2.0]), 1.0, equality=np.bool_(True)).equality is True


finite_or_not = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [math.inf, -math.inf, math.nan, 0.0, -0.0]
)


@settings(max_examples=300, deadline=None)
@given(finite_or_not, finite_or_not, st.floats(-1e6, 1e6))
def test_a_range_is_rejected_or_enforced(lo, hi, y):
    """Any pair of floats makes a valid range or a KizzasiError; a valid one holds after
    enforcement (the Range(inf, inf) bug returned y unchanged)."""
    try:
        rails = GuardrailSet().add(Range(lo, hi))
    except KizzasiError:
        assert math.isnan(lo) or math.isnan(hi) or lo > hi or lo == math.inf or hi == -math.inf
        return
    out, _ = rails.enforce(np.array([y]))
    v = float(out[0])
    tol = 1e-9  # the set's tolerance on the relative violation (x - U) / max(1, |U|), as the
    # solver measures it (not x <= U + tol max(1, |U|), whose rounding differs: 1e-9 above
    # hi = -1e-9 is exactly the tolerance, but -1e-9 + 1e-9 is 0.0, below y = 8e-238)
    assert lo == -math.inf or (lo - v) / max(1.0, abs(lo)) <= tol
    assert hi == math.inf or (v - hi) / max(1.0, abs(hi)) <= tol
