"""Activations against float64 references: precision where it is easy to lose it."""

import numpy as np
import pytest

from kizzasi_lite.backends import backend_name, to_numpy
from kizzasi_lite.nn import silu, silu_of_half, softplus


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softplus_is_precise_over_its_whole_range(xp, dtype):
    """softplus keeps log1p's relative precision, from e^-80 (no rounding of 1 + e^x may lose
    it) through 0 to large x, where it is x."""
    x = np.concatenate([-np.geomspace(80.0, 1e-6, 400), [0.0], np.geomspace(1e-6, 80.0, 400)])
    x = x.astype(dtype)
    ref = np.logaddexp(x.astype(np.float64), 0.0)  # of the same (rounded) inputs
    got = to_numpy(softplus(xp.asarray(x)))
    rtol = 4e-7 if dtype == "float32" else 1e-15
    if backend_name(xp) == "mlx" and dtype == "float32":
        rtol = 4e-6  # MLX's own float32 exp is good to ~3e-6 at large negative arguments
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=0.0)


def test_silu_of_half_is_silu_of_twice_its_input(xp):
    x = np.linspace(-30.0, 30.0, 601)
    np.testing.assert_allclose(
        to_numpy(silu_of_half(xp.asarray(0.5 * x))),
        to_numpy(silu(xp.asarray(x))),
        rtol=1e-12,
        atol=1e-300,
    )
