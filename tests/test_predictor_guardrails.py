"""Guardrails on the predictor: every emitted prediction satisfies them, files keep them."""

import numpy as np
import pytest

from kizzasi_lite import ConfigError, GuardrailInfeasibleError, Kizzasi, KizzasiConfig
from kizzasi_lite.logic import GuardrailSet, Linear, Range, RateLimit


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
    assert np.abs(k.last_raw[0, 0]) > 0.5 or np.any(np.abs(ys[:, 0]) == 0.5)
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
