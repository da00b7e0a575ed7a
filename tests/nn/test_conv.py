"""The depthwise causal conv against a loop over taps, and its step against the sequence."""

import numpy as np
import pytest

from kizzasi_lite.backends import namespace, to_numpy
from kizzasi_lite.nn import causal_conv1d, causal_conv1d_step
from tests.gradcheck import check_grad


def _reference(x, weight, bias, state):
    """y[b, t, c] = sum_j w[c, 0, j] xx[b, t + j, c] (+ bias), xx = state then x, in float64."""
    xx = np.concatenate([state, x], axis=1)
    k, t = weight.shape[-1], x.shape[1]
    y = sum(xx[:, j : j + t, :] * weight[:, 0, j] for j in range(k))
    return y + (0.0 if bias is None else bias), xx[:, t:, :]


@pytest.mark.parametrize("t", [0, 1, 3, 7, 16, 33])
@pytest.mark.parametrize("use_bias", [True, False])
def test_causal_conv1d_is_the_sum_over_taps(xp, t, use_bias):
    """Any length, with and without bias, from a state; the new state is the last K-1 inputs
    (fewer than K-1 steps keep part of the old state)."""
    rng = np.random.default_rng(t)
    x, state = rng.normal(size=(2, t, 5)), rng.normal(size=(2, 3, 5))
    weight, bias = rng.normal(size=(5, 1, 4)), rng.normal(size=(5,)) if use_bias else None
    y_ref, s_ref = _reference(x, weight, bias, state)
    b = None if bias is None else xp.asarray(bias)
    y, s = causal_conv1d(xp.asarray(x), xp.asarray(weight), b, xp.asarray(state))
    np.testing.assert_allclose(to_numpy(y), y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_numpy(s), s_ref, rtol=0, atol=0)


def test_causal_conv1d_steps_equal_the_sequence(xp):
    rng = np.random.default_rng(1)
    x, state = rng.normal(size=(3, 32, 6)), rng.normal(size=(3, 2, 6))
    weight, bias = rng.normal(size=(6, 1, 3)), rng.normal(size=(6,))
    w, b = xp.asarray(weight), xp.asarray(bias)
    y_seq, s_seq = causal_conv1d(xp.asarray(x), w, b, xp.asarray(state))
    s, ys = xp.asarray(state), []
    for i in range(32):
        y, s = causal_conv1d_step(xp.asarray(x[:, i, :]), w, b, s)
        ys.append(to_numpy(y))
    np.testing.assert_allclose(np.stack(ys, axis=1), to_numpy(y_seq), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_numpy(s), to_numpy(s_seq), rtol=0, atol=0)


def test_causal_conv1d_gradient_is_the_finite_difference(xp):
    """To the weights, bias, input and state."""
    rng = np.random.default_rng(2)
    p = {k: xp.asarray(rng.normal(size=s)) for k, s in
         {"x": (2, 16, 3), "w": (3, 1, 4), "b": (3,), "s": (2, 3, 3)}.items()}  # fmt: skip
    probe = xp.asarray(rng.normal(size=(2, 16, 3)))

    def loss(q):
        y, _ = causal_conv1d(q["x"], q["w"], q["b"], q["s"])
        return namespace(y).sum(y * probe)

    check_grad(loss, p, entries=12, rtol=1e-7)
