"""Activations against float64 references: precision where it is easy to lose it."""

import warnings

import numpy as np
import pytest

from kizzasi_lite import nn
from kizzasi_lite.backends import backend_name, namespace, to_numpy
from kizzasi_lite.nn import outer, silu, silu_of_half, softplus
from tests.gradcheck import check_grad


@pytest.mark.parametrize("copies", [1, 2], ids=["one-call", "twelve-calls"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softplus_is_precise_over_its_whole_range(xp, dtype, copies):
    """softplus keeps log1p's relative precision, from e^-80 (no rounding of 1 + e^x may lose
    it) through 0 to large x, where it is x: a step's few numbers (one ``logaddexp``) and more
    than ``_FEW_NUMBERS`` (the vectorised form)."""
    x = np.concatenate([-np.geomspace(80.0, 1e-6, 400), [0.0], np.geomspace(1e-6, 80.0, 400)])
    x = np.tile(x, copies).astype(dtype)
    assert (x.size <= nn._FEW_NUMBERS) == (copies == 1)
    ref = np.logaddexp(x.astype(np.float64), 0.0)  # of the same (rounded) inputs
    got = to_numpy(softplus(xp.asarray(x)))
    rtol = 4e-7 if dtype == "float32" else 1e-15
    if backend_name(xp) == "mlx" and dtype == "float32":
        rtol = 4e-6  # MLX's own float32 exp is good to ~3e-6 at large negative arguments
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=0.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_silu_is_precise_over_its_whole_range(xp, dtype):
    """silu keeps the relative precision of ``x / (1 + exp(-x))`` in float64 from -87 (where
    it is about -1e-36) through 0 to large x, where it is x."""
    x = np.concatenate([-np.geomspace(87.0, 1e-6, 400), [0.0], np.geomspace(1e-6, 80.0, 400)])
    x = x.astype(dtype)
    x64 = x.astype(np.float64)
    ref = x64 / (1.0 + np.exp(-x64))
    got = to_numpy(silu(xp.asarray(x)))
    rtol = 1e-6 if dtype == "float32" else 1e-14
    if backend_name(xp) == "mlx" and dtype == "float32":
        rtol = 6e-6  # MLX's own float32 exp is good to ~3e-6 at large arguments
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=0.0)


def test_silu_is_tiny_far_in_the_negative_tail_as_torch(xp):
    """Where ``exp(-x)`` overflows float32 (below about -88.7) silu is -0.0, as torch's (the
    true value is below 1.3e-36 in magnitude), with no overflow warning; -inf gives nan and inf
    gives inf, as torch; nan passes through."""
    x = np.array([-3e38, -1e30, -1e4, -89.0, -88.0, -np.inf, np.inf, np.nan], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = to_numpy(silu(xp.asarray(x)))
    tail = got[:5]
    assert np.all(tail <= 0.0) and np.all(tail >= -1.3e-36)
    assert np.all(np.signbit(tail[:4]))  # -0.0 where exp(-x) overflows, and at -89
    assert np.isnan(got[5]) and got[6] == np.inf and np.isnan(got[7])


@pytest.mark.parametrize("points", [601, 1801], ids=["tanh-form", "exp-form"])
def test_silu_of_half_is_silu_of_twice_its_input(xp, points):
    x = np.linspace(-30.0, 30.0, points)
    assert (x.size <= nn._FEW_NUMBERS) == (points == 601)
    np.testing.assert_allclose(
        to_numpy(silu_of_half(xp.asarray(0.5 * x))),
        to_numpy(silu(xp.asarray(x))),
        rtol=1e-12,
        atol=1e-14,  # h + h tanh(h) cancels in the negative tail: ~|h| eps absolute
    )


@pytest.mark.parametrize("copies", [1, 200], ids=["tanh-form", "exp-form"])
def test_silu_of_half_is_tiny_far_in_the_negative_tail(xp, copies):
    """Both forms give a non-positive number below 1.3e-36 in magnitude where ``silu(2 h)`` is
    one, with no overflow warning, and pass inf and nan as silu does."""
    h = np.array([-3e38, -1e4, -45.0, -44.0, np.inf, np.nan], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = to_numpy(silu_of_half(xp.asarray(np.tile(h, copies))))[:6]
    assert np.all(got[:4] <= 0.0) and np.all(got[:4] >= -1.3e-36)
    assert got[4] == np.inf and np.isnan(got[5])


def test_silu_gradient_is_the_finite_difference(xp):
    """silu's own vjp ``s + y (1 - s)`` against central differences, from the tail where
    ``exp(-x)`` overflows float32 (both ~0) through 0 to large x (where it is 1)."""
    x = np.array([-120.0, -60.0, -5.0, -1.0, -1e-3, 0.0, 0.3, 2.0, 9.0, 40.0])
    w = np.linspace(0.5, 1.5, x.size)  # weights, so each entry's gradient is checked apart

    def loss(p):
        return namespace(p["x"]).sum(silu(p["x"]) * xp.asarray(w))

    check_grad(loss, {"x": xp.asarray(x)}, entries=10, rtol=1e-7)


def test_outer_is_the_broadcast_product(xp):
    """``outer`` of matching rows equals the broadcast product, exactly (one product each), on
    plain NumPy (its ``einsum``) and on every other backend."""
    rng = np.random.default_rng(0)
    u = rng.standard_normal((2, 3, 5)).astype(np.float32)
    v = rng.standard_normal((2, 3, 7)).astype(np.float32)
    got = to_numpy(outer(xp.asarray(u), xp.asarray(v)))
    assert got.shape == (2, 3, 5, 7)
    np.testing.assert_array_equal(got, u[..., :, None] * v[..., None, :])
