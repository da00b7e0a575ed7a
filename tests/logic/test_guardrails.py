"""GuardrailSet: enforcement reports, policies, rate limits over long streams, temporal shields,
and saving."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kizzasi_lite.backends import to_numpy
from kizzasi_lite.errors import ConfigError, GuardrailInfeasibleError, InputError
from kizzasi_lite.logic import (
    BoundType,
    ConstraintBuilder,
    GreaterThan,
    Guardrail,
    GuardrailSet,
    LessThan,
    Linear,
    Monitor,
    Quadratic,
    Range,
    RateLimit,
    TemporalRule,
    Verdict,
)
from tests.conftest import assert_close


def rails_example(policy="raise"):
    rails = GuardrailSet(policy=policy)
    rails.add(
        ConstraintBuilder()
        .name("limits")
        .bound(0, BoundType.Range(-1.0, 1.0))
        .bound(1, BoundType.LessThan(2.0))
        .rate_limit(0.5)
        .linear([1.0, 1.0, 0.0], 1.5)
        .quadratic([[1.0, 0.0], [0.0, 1.0]], None, 4.0, channels=[1, 2])
        .build(),
        priority=10,
    )
    rails.add(TemporalRule("G(x2 > 0.9 -> F[0,3] x2 < 0.5)"), name="response")
    rails.add(TemporalRule("F(x0 > 0.5)"), name="liveness")  # monitored only
    return rails


def test_report_and_counters():
    rails = rails_example()
    y = np.array([[3.0, -3.0, 0.0], [0.1, 0.2, 0.3]])
    out, report = rails.enforce(y)
    assert report.status == ["projected", "feasible"]
    np.testing.assert_allclose(out[0], [1.0, -2.0, 0.0], atol=1e-12)
    assert np.array_equal(out[1], y[1])
    assert report.active[0] == [
        "limits/range[x0: -1.0..1.0]",
        "limits/quadratic[x1,x2: y'Qy + c.y <= 4.0]",
    ]
    assert report.active[1] == [] and report.distance[1] == 0.0
    np.testing.assert_allclose(report.distance[0], np.linalg.norm(out[0] - y[0]))
    assert report.interventions == 1
    assert rails.counters["limits/range[x0: -1.0..1.0]"] == 1
    assert set(report.rules) == {
        "response/rule[G((!(x2 > 0.9) | F[0,3](x2 < 0.5)))]",
        "liveness/rule[F(x0 > 0.5)]",
    }
    assert report.rules["liveness/rule[F(x0 > 0.5)]"] == ["satisfied", "undecided"]
    json.dumps(report.to_dict())  # a report can be logged as JSON


def test_single_stream_and_backend_are_kept(xp):
    rails = GuardrailSet().add([Range(0.0, 1.0), RateLimit(0.25)])
    y = xp.asarray([2.0, -3.0], dtype=xp.float32)
    prev = xp.asarray([0.5, 0.5], dtype=xp.float32)
    out, report = rails.enforce(y, prev)
    assert out.shape == (2,)
    assert_close(out, xp.asarray([0.75, 0.25], dtype=xp.float32), xp=xp)
    assert report.status == ["projected"]


def test_float32_results_satisfy_the_constraints_after_rounding(xp):
    rng = np.random.default_rng(0)
    rails = GuardrailSet().add(
        [Linear([0.3, -0.7, 0.1], 0.1), Quadratic(np.eye(3).tolist(), None, 2.0), Range(-1, 0.1)]
    )
    y = xp.asarray(rng.normal(size=(16, 3)) * 3, dtype=xp.float32)
    out, _ = rails.enforce(y)
    o = to_numpy(out).astype(np.float64)
    assert o.dtype == np.float64 and to_numpy(out).dtype == np.float32
    assert np.all(o @ np.array([0.3, -0.7, 0.1]) <= 0.1 * (1 + 1e-9))
    assert np.all((o * o).sum(1) <= 2.0 * (1 + 1e-9))
    assert np.all(o <= 0.1) and np.all(o >= -1.0)


def test_input_validation():
    rails = GuardrailSet().add(Range(0, 1))
    with pytest.raises(InputError, match="NaN"):
        rails.enforce(np.array([[np.nan, 0.0]]))
    with pytest.raises(InputError, match="shape"):
        rails.enforce(np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="previous has shape"):
        rails.enforce(np.zeros((2, 2)), np.zeros((1, 2)))
    with pytest.raises(InputError, match="floating"):
        rails.enforce(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ConfigError, match="policy"):
        GuardrailSet(policy="ignore")
    with pytest.raises(ConfigError, match="already in the set"):
        GuardrailSet().add(Range(0, 1), name="a").add(Range(0, 1), name="a")


def test_raise_policy_names_the_conflict_at_run_time():
    # feasible on its own; the rate limit around `previous` makes it empty
    rails = GuardrailSet().add([GreaterThan(0.8, channel=0)], name="floor")
    rails.add(RateLimit(0.1), name="slew")
    with pytest.raises(GuardrailInfeasibleError) as err:
        rails.enforce(np.array([[0.9]]), previous=np.array([[0.0]]))
    msg = str(err.value)
    assert "stream 0" in msg and "floor/greater_than[x0 >= 0.8]" in msg
    assert "slew/rate_limit[all: 0.1/step]" in msg


def test_prioritize_keeps_the_higher_priority():
    rails = GuardrailSet(policy="prioritize")
    rails.add(GreaterThan(0.8, channel=0), name="floor", priority=1)
    rails.add(RateLimit(0.1), name="slew", priority=5)
    out, report = rails.enforce(np.array([[0.9], [0.85]]), previous=np.array([[0.0], [0.8]]))
    np.testing.assert_allclose(out, [[0.1], [0.85]])
    assert report.status == ["prioritized", "feasible"]
    assert report.unsatisfied == [["floor/greater_than[x0 >= 0.8]"], []]


def test_build_time_detection():
    with pytest.raises(GuardrailInfeasibleError, match="lo = 1.0 > hi = 0.0"):
        ConstraintBuilder().bound(0, BoundType.Range(1.0, 0.0))
    with pytest.raises(GuardrailInfeasibleError, match="in conflict"):
        GuardrailSet().add([Range(0, 1, channel=0), GreaterThan(2, channel=0)])
    rails = GuardrailSet(policy="prioritize").add(
        [Range(0, 1, channel=0), GreaterThan(2, channel=0)]
    )
    assert len(rails.static_conflicts) == 2  # allowed, and reported


def test_rate_limit_holds_over_a_long_stream():
    rng = np.random.default_rng(0)
    rails = GuardrailSet().add([RateLimit(0.05), Range(-1.0, 1.0)])
    prev, worst_step = None, 0.0
    for _ in range(10_000):
        y = rng.normal(size=(4, 2)) * 2.0  # wildly jumping raw predictions
        out, _ = rails.enforce(y, prev)
        if prev is not None:
            worst_step = max(worst_step, float(np.max(np.abs(out - prev))))
        assert np.all(np.abs(out) <= 1.0)
        prev = out
    assert worst_step <= 0.05 * (1 + 1e-12)


def test_bounded_response_is_enforced_under_a_rate_limit():
    rule = "G(x0 > 0.9 -> F[0,5] x0 < 0.5)"
    rails = GuardrailSet().add([TemporalRule(rule), RateLimit(0.05)], name="valve")
    monitor = Monitor(rule)
    prev, top = np.array([[0.0]]), 0.0
    for t in range(300):
        want = np.array([[1.0 if (t // 40) % 2 == 0 else 0.0]])  # pushes past the trigger
        out, report = rails.enforce(want, prev)
        assert monitor.update(out[0]).verdict != Verdict.VIOLATED
        assert abs(out[0, 0] - prev[0, 0]) <= 0.05 * (1 + 1e-12)
        prev, top = out, max(top, float(out[0, 0]))
    # x0 may exceed 0.9 only while it can still come back below 0.5 in 5 steps: never here
    assert top == 0.9


def test_bounded_response_without_rate_limit_forces_the_response():
    rule = TemporalRule("G(x0 > 0.9 -> F[0,2] x0 < 0.5)")
    rails = GuardrailSet().add(rule, name="r")
    outs = [float(rails.enforce(np.array([[1.0]]))[0][0, 0]) for _ in range(8)]
    assert outs[0] == 1.0  # triggered, three steps to respond
    assert outs[1] == 1.0 and outs[2] < 0.5  # the deadline forces x0 < 0.5
    assert Monitor("G(x0 > 0.9 -> F[0,2] x0 < 0.5)").run([[v] for v in outs])[-1].verdict != (
        Verdict.VIOLATED
    )


def test_monitored_rules_do_not_restrict():
    rails = GuardrailSet().add(TemporalRule("F(x0 > 5)"), name="live")
    out, report = rails.enforce(np.array([[0.0]]))
    assert out[0, 0] == 0.0 and report.rules["live/rule[F(x0 > 5.0)]"] == ["undecided"]
    rails.reset()
    with pytest.raises(InputError, match="streams"):
        rails.enforce(np.zeros((1, 1)))
        rails.enforce(np.zeros((2, 1)))


def test_json_round_trip_is_exact(tmp_path):
    rails = rails_example(policy="prioritize")
    rails.add(Range(-np.inf, 0.1 + 0.2, channel=2), name="odd", priority=-3)
    text = rails.to_json()
    back = GuardrailSet.from_json(text)
    assert back == rails and back.to_json() == text
    assert [(e.name, e.priority) for e in back.entries] == [
        (e.name, e.priority) for e in rails.entries
    ]
    path = tmp_path / "guardrails.json"
    rails.save(path)
    assert GuardrailSet.load(path) == rails
    y = np.array([[3.0, 3.0, 3.0]])
    np.testing.assert_array_equal(rails.enforce(y)[0], GuardrailSet.load(path).enforce(y)[0])
    with pytest.raises(ConfigError, match="format"):
        GuardrailSet.from_dict({"format": "other"})


def test_the_solver_budget_is_saved_and_optional_in_the_file():
    rails = GuardrailSet(max_iter=300).add(Range(0.0, 1.0))
    assert GuardrailSet.from_json(rails.to_json()).max_iter == 300
    doc = rails.to_dict()
    del doc["max_iter"]  # files written before it was saved
    assert GuardrailSet.from_dict(doc).max_iter == 4000
    with pytest.raises(ConfigError, match=r"max_iter must be a whole number >= 1, got 2\.5"):
        GuardrailSet.from_dict({**doc, "max_iter": 2.5})


def test_guardrail_validation():
    with pytest.raises(ConfigError, match="name"):
        Guardrail("a/b", ())
    with pytest.raises(ConfigError, match="not a constraint"):
        Guardrail("a", (1.0,))
    rails = GuardrailSet().add(LessThan(1.0), name="cap")
    rails.remove("cap")
    assert len(rails) == 0


def test_float32_arithmetic_fallback(monkeypatch):
    """Where the backend has no float64 (MLX on a GPU) the solver works in float32."""
    from kizzasi_lite.logic import enforce as module

    monkeypatch.setattr(module, "_work_dtype", lambda xp: xp.float32)
    rails = GuardrailSet().add([Linear([1.0, 1.0], 1.0), Range(-1, 1), RateLimit(0.5)])
    y = np.array([[3.0, 0.5], [0.2, 0.1]], dtype=np.float32)
    out, report = rails.enforce(y, np.zeros_like(y))
    np.testing.assert_allclose(out, [[0.5, 0.5], [0.2, 0.1]], atol=1e-6)
    assert report.status == ["projected", "feasible"]


def test_observed_history_drives_the_shield():
    rails = GuardrailSet().add(TemporalRule("G(x0 > 0.9 -> F[0,2] x0 < 0.5)"), name="r")
    verdicts = rails.observe(np.array([[1.0], [0.0]]))  # stream 0 was triggered elsewhere
    assert verdicts == {"r/rule[G((!(x0 > 0.9) | F[0,2](x0 < 0.5)))]": ["undecided"] * 2}
    rails.observe(np.array([[1.0], [0.0]]))
    out, _ = rails.enforce(np.array([[1.0], [1.0]]))  # stream 0's deadline is now
    assert out[0, 0] < 0.5 and out[1, 0] == 1.0


def test_rule_conflicts_raise_or_yield_by_priority():
    rule = TemporalRule("G(x0 > 0.9 -> X x0 > 0.95)")  # once above 0.9, stay above 0.95
    rails = GuardrailSet().add(rule, name="hold").add(LessThan(0.92, channel=0), name="cap")
    out, _ = rails.enforce(np.array([[0.91]]))
    assert out[0, 0] == 0.9  # the shield refuses a trigger whose response the cap forbids
    rails.observe(np.array([[0.91]]))  # but a trigger happened elsewhere
    with pytest.raises(GuardrailInfeasibleError, match=r"hold/rule.*cap/less_than|cap.*hold"):
        rails.enforce(np.array([[0.5]]))
    soft = GuardrailSet(policy="prioritize")
    soft.add(rule, name="hold", priority=0).add(LessThan(0.92, channel=0), name="cap", priority=1)
    soft.observe(np.array([[0.91]]))
    out, report = soft.enforce(np.array([[0.99]]))
    name = "hold/rule[G((!(x0 > 0.9) | X(x0 > 0.95)))]"
    assert out[0, 0] == 0.92 and report.unsatisfied == [[name]]
    assert report.rules[name] == ["violated"]
    out, report = soft.enforce(np.array([[0.99]]))  # a violated rule restricts nothing more
    assert out[0, 0] == 0.92 and report.status == ["projected"]


def test_shield_and_priorities_on_every_backend(xp):
    rails = GuardrailSet(policy="prioritize")
    rails.add(
        [
            TemporalRule("G(x0 > 0.9 -> F[0,3] x0 < 0.5)"),
            RateLimit(0.2),
            Linear([1.0, 1.0], 1.2),
            Quadratic([[1.0, 0.0], [0.0, 1.0]], None, 2.0),
        ],
        name="a",
    )
    rails.add(GreaterThan(0.3, channel=1), name="b", priority=-1)
    prev = xp.asarray([[0.0, 0.0], [0.8, 0.9]], dtype=xp.float32)
    want = xp.asarray([[1.0, 1.0], [1.0, -1.0]], dtype=xp.float32)
    expect = [
        (
            [[0.2, 0.2], [1.0, 0.7]],
            [["b/greater_than[x1 >= 0.3]"], ["a/linear[1.0*x0 + 1.0*x1 <= 1.2]"]],
        ),
        ([[0.4, 0.4], [0.9, 0.5]], [[], ["a/linear[1.0*x0 + 1.0*x1 <= 1.2]"]]),
        ([[0.6, 0.6], [0.7, 0.3]], [[], []]),
        ([[0.6, 0.6], [0.5, 0.3]], [[], []]),  # the response arrives in time
    ]
    for values, unsatisfied in expect:
        out, report = rails.enforce(want, prev)
        assert_close(out, xp.asarray(values, dtype=xp.float32), xp=xp, atol=1e-6)
        assert report.unsatisfied == unsatisfied
        prev = out
    assert list(report.rules.values()) == [["undecided", "undecided"]]


def test_enforce_takes_nested_lists_like_arrays():
    rails = GuardrailSet().add([Range(0.0, 1.0), RateLimit(0.25)])
    out, report = rails.enforce([0.5, 2.0])
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_array_equal(out, [0.5, 1.0])
    out, _ = rails.enforce([[2, -3]], previous=np.array([[0.5, 0.5]], dtype=np.float32))
    np.testing.assert_allclose(out, [[0.75, 0.25]])
    verdicts = GuardrailSet().add(TemporalRule("G(x0 <= 1)"), name="r").observe([[0.5]])
    assert verdicts == {"r/rule[G(x0 <= 1.0)]": ["undecided"]}


@pytest.mark.parametrize(
    ("y", "message"),
    [
        ([[1.0, 2.0], [3.0]], "must be an array .* of shape \\(C,\\) or \\(B, C\\), got list"),
        ("0.5, 2.0", "must be an array .* got str"),
        (0.5, "must be an array .* got float"),
        ({"x0": 1.0}, "must be an array .* got dict"),
        ([], "with C >= 1"),
        ([["a", "b"]], "real floating-point"),
    ],
)
def test_enforce_rejects_what_is_not_an_array_of_numbers(y, message):
    with pytest.raises(InputError, match=message):
        GuardrailSet().add(Range(0.0, 1.0)).enforce(y)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "longdouble"])
def test_enforce_keeps_every_real_floating_dtype_and_refuses_others(dtype):
    out, _ = GuardrailSet().add(Range(0.0, 1.0)).enforce(np.array([2.0, 0.5], dtype=dtype))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, [1.0, 0.5])
    for bad in (np.array([1], dtype=np.int8), np.array([1j]), np.array([None])):
        with pytest.raises(InputError, match="real floating-point array, got dtype"):
            GuardrailSet().add(Range(0.0, 1.0)).enforce(bad)


def test_check_channels_names_both_sizes():
    rails = GuardrailSet().add(Linear([1.0, 1.0], 1.0), name="sum")
    rails.check_channels(2)
    with pytest.raises(ConfigError) as err:
        rails.check_channels(3)
    msg = str(err.value)
    assert "3 channel(s)" in msg and "has 2 coefficients, predictions have 3 channels" in msg
    with pytest.raises(ConfigError, match="reads channel 4, but predictions have 3 channels"):
        GuardrailSet().add(Range(0.0, 1.0, channel=4)).check_channels(3)
    with pytest.raises(ConfigError, match=r"x2, predictions have 2 channels"):
        GuardrailSet().add(TemporalRule("G(x2 <= 1)")).check_channels(2)
    with pytest.raises(ConfigError, match="n_channels must be a whole number >= 1"):
        rails.check_channels(0)
    GuardrailSet().add(Range(0.0, 1.0)).check_channels(5)  # every channel: any count fits
