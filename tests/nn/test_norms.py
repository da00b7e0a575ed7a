"""Normalisations and the token shift against float64 references."""

import numpy as np
import pytest

from kizzasi_lite.backends import to_numpy
from kizzasi_lite.nn import layer_norm, previous_tokens


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_layer_norm_equals_torch_math(xp, dtype, offset):
    """Biased variance, eps inside the root, weight then bias. With a mean far from zero
    (offset) the squares are still taken of ``x - mean``, so the variance does not cancel: the
    error stays that of the rounded mean, a few units in the last place of the offset."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 5, 64)) * 2.0 + offset).astype(dtype)
    w, b = rng.standard_normal(64).astype(dtype), rng.standard_normal(64).astype(dtype)
    x64 = x.astype(np.float64)
    d = x64 - x64.mean(-1, keepdims=True)
    ref = d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-5) * w + b
    got = to_numpy(layer_norm(xp.asarray(x), xp.asarray(w), xp.asarray(b), 1e-5))
    if dtype == "float32":  # 8 units in the last place of the mean, through weight / std
        tol = 2e-6 + 8 * float(np.spacing(np.float32(offset))) * np.abs(w).max() / 2.0
    else:
        tol = 1e-12
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("T", [1, 4])
def test_previous_tokens_shifts_by_one_step(xp, T):
    x = np.arange(2 * T * 3, dtype=np.float32).reshape(2, T, 3)
    prev = -np.arange(6, dtype=np.float32).reshape(2, 3) - 1.0
    got = to_numpy(previous_tokens(xp.asarray(x), xp.asarray(prev)))
    np.testing.assert_array_equal(got, np.concatenate([prev[:, None, :], x[:, :-1, :]], axis=1))
