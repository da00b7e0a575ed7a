"""Guardrails on the predictor: every emitted prediction satisfies them, files keep them."""

import numpy as np
import pytest

from kizzasi_lite import ConfigError, GuardrailInfeasibleError, Kizzasi, KizzasiConfig
from kizzasi_lite.logic import GuardrailSet, Linear, Range, RateLimit, TemporalRule


def model():
    k = Kizzasi(KizzasiConfig(model_type="mamba", input_dim=2, hidden_dim=16, num_layers=1))
    rng = np.random.default_rng(0)
    k.params["head.weight"] = k.xp.asarray(rng.normal(size=(2, 16)).astype(np.float32) * 3)
    return k


def rails():
    return GuardrailSet().add([Range(-0.5, 0.5, channel=0), RateLimit(0.1, channel=1)], name="safe")


def test_step_forward_and_rollouts_respect_the_guardrails():
    k = model()
    k.set_guardrails(rails())
    xs = np.random.default_rng(1).normal(size=(40, 2)) * 2
    ys = np.array([k.step(x) for x in xs])
    assert np.all(np.abs(ys[:, 0]) <= 0.5 * (1 + 1e-9))
    assert np.all(np.abs(np.diff(ys[:, 1])) <= 0.1 * (1 + 1e-6))
    assert k.last_raw is not None and k.last_report is not None
    assert np.abs(k.last_raw[0]) > 0.5 or np.any(np.abs(ys[:, 0]) == 0.5)
    k.reset()
    seq = k.forward(xs)
    np.testing.assert_allclose(seq, ys, rtol=1e-5, atol=1e-5)
    path = k.predict_n(xs[:5], 20)
    assert np.all(np.abs(path[:, 0]) <= 0.5 * (1 + 1e-9))
    assert np.all(np.abs(np.diff(path[:, 1])) <= 0.1 * (1 + 1e-6))


def test_guardrails_are_saved_with_the_model(tmp_path):
    k = model()
    k.set_guardrails(rails())
    k.save_pretrained(tmp_path)
    assert (tmp_path / "guardrails.json").is_file()
    back = Kizzasi.from_pretrained(tmp_path)
    assert back.guardrails.to_dict() == k.guardrails.to_dict()
    x = np.array([3.0, -3.0])
    np.testing.assert_array_equal(back.step(x), k.step(x))
    k.set_guardrails(None)
    k.save_pretrained(tmp_path)
    assert not (tmp_path / "guardrails.json").exists()


def test_guardrails_on_missing_channels_or_infeasible_sets_are_rejected():
    k = model()
    with pytest.raises(ConfigError, match="channel 4"):
        k.set_guardrails(Range(0, 1, channel=4))
    with pytest.raises(ConfigError, match="has 3 coefficients, predictions have 2"):
        k.set_guardrails(Linear([1.0, 1.0, 1.0], 1.0))  # no channel list: one per channel
    with pytest.raises(GuardrailInfeasibleError):
        k.set_guardrails([Range(0, 1, channel=0), Linear([1.0, 0.0], 5.0, equality=True)])


def test_infeasible_at_run_time_raises_and_keeps_the_state():
    k = model()
    k.set_guardrails(RateLimit(0.01, channel=0))
    y = k.step(np.zeros(2))
    # a range far from the last output cannot be reached within the rate limit
    k.guardrails.add(Range(float(y[0]) + 5, float(y[0]) + 6, channel=0))
    before = {key: np.array(v) for key, v in k.state.items()}
    with pytest.raises(GuardrailInfeasibleError):
        k.step(np.full(2, 100.0))
    for key, v in k.state.items():
        np.testing.assert_array_equal(np.asarray(v), before[key])


# ---------------------------------------------------------------------------- roll-outs and rules
def _ruled(rule: str = "G(Y(x0 > 0.5) -> x0 < 0.2)", **extra) -> Kizzasi:
    """A one-channel model whose outputs equal its inputs (residual head with zero weights), with
    a temporal rule: after an output above 0.5 the next one must be below 0.2."""
    k = Kizzasi(
        KizzasiConfig(model_type="s4d", input_dim=1, hidden_dim=8, dtype="float64", **extra)
    )
    k.params = {
        key: k.xp.zeros_like(v) if key.startswith("head.") else v for key, v in k.params.items()
    }
    k.set_guardrails(GuardrailSet([TemporalRule(rule)]))
    return k


def _verdict(rule: str, ys) -> str:
    gs = GuardrailSet([TemporalRule(rule)])
    report = None
    for y in np.asarray(ys, dtype=np.float64).reshape(-1, 1):
        report = gs.observe(y)
    return next(iter(report.values()))[0]


def test_rollouts_see_their_own_history_and_leave_the_live_one():
    k = _ruled()
    path = k.predict_n([0.6], 3)  # the model repeats its input; the rule forbids 0.6 twice
    assert _verdict("G(Y(x0 > 0.5) -> x0 < 0.2)", path) != "violated"
    np.testing.assert_allclose(path[:, 0], [0.6, 0.2, 0.2])  # the guarded 0.2 is fed back
    assert k.guardrails._streams is None  # the live rule history did not see the roll-out
    np.testing.assert_allclose(k.step([0.6]), [0.6])  # nothing emitted before: 0.6 is allowed


def test_sampled_rollouts_with_temporal_rules_before_and_after_a_step():
    k = _ruled(head="gaussian")
    paths = k.predict_n([0.3], 4, samples=3, seed=0)
    assert paths.shape == (3, 4, 1)
    k.step([0.3])  # the live history follows one stream, not 3
    paths = k.predict_n([0.3], 4, samples=5, seed=1)
    for p in paths:
        assert _verdict("G(Y(x0 > 0.5) -> x0 < 0.2)", p) != "violated"
    k.step([0.3])


def test_a_forward_that_cannot_be_guarded_leaves_the_rule_history():
    rule = "G(Y(x0 > 0.5) -> x0 < 0.2)"

    def make():
        k = _ruled(rule)
        k.guardrails.add(RateLimit(0.1))
        return k

    k = make()
    with pytest.raises(GuardrailInfeasibleError):
        k.forward(np.array([[0.3], [0.4], [0.55], [0.6], [0.7]]))
    assert k.state is None and k.guardrails._streams is None
    np.testing.assert_allclose(k.step([0.3]), make().step([0.3]))


def test_forecast_is_guarded_step_by_step():
    k = Kizzasi(
        KizzasiConfig(model_type="s4d", input_dim=2, hidden_dim=8, forecast_horizon=4,
                      forecast_lookback=8)
    )  # fmt: skip
    history = np.linspace(0.0, 3.0, 20)[:, None] * np.array([1.0, -1.0])
    raw = k.forecast(history)
    k.set_guardrails(GuardrailSet([Range(-0.05, 0.05, channel=0), RateLimit(0.02, channel=1)]))
    y = k.forecast(history)
    assert np.all(np.abs(y[:, 0]) <= 0.05 * (1 + 1e-6))
    steps = np.diff(np.concatenate([history[-1:, 1], y[:, 1]]))
    assert np.all(np.abs(steps) <= 0.02 * (1 + 1e-5))
    assert not np.allclose(raw, y)
    assert k.guardrails._streams is None and k.state is None
