"""Shared fixtures: the ``xp`` backend fixture and one ``assert_close`` helper."""

from __future__ import annotations

import numpy as np
import pytest

from kizzasi_lite.backends import backend_name, dtype_name, get_namespace, namespace, to_numpy
from kizzasi_lite.errors import BackendUnavailableError

CORE_BACKENDS = ["numpy", "array_api_strict", "mlx", "cupy"]


def _load(name: str):
    try:
        return get_namespace(name)
    except BackendUnavailableError as exc:
        pytest.skip(f"backend {name} unavailable: {exc}")


@pytest.fixture(params=CORE_BACKENDS)
def xp(request):
    """Each array backend in turn; skips (with the reason) where one is not installed."""
    return _load(request.param)


@pytest.fixture
def np_xp():
    """The NumPy namespace alone, for tests that are about numbers, not portability."""
    return get_namespace("numpy")


def tol(dtype) -> dict:
    """Default tolerances: 1e-5 for float32, 1e-10 for float64."""
    return (
        {"rtol": 1e-10, "atol": 1e-10}
        if dtype_name(dtype) == "float64"
        else {"rtol": 1e-5, "atol": 1e-5}
    )


def assert_close(actual, expected, *, rtol=None, atol=None, xp=None, check_dtype=True):
    """Compare arrays of any backend; checks namespace (when ``xp`` is given) and dtype too."""
    if xp is not None:
        assert backend_name(namespace(actual)) == backend_name(xp), (
            f"result lives in {backend_name(namespace(actual))}, expected {backend_name(xp)}"
        )
    if check_dtype and hasattr(expected, "dtype") and hasattr(actual, "dtype"):
        assert dtype_name(actual.dtype) == dtype_name(expected.dtype), (
            f"dtype {dtype_name(actual.dtype)} != expected {dtype_name(expected.dtype)}"
        )
    a, e = np.asarray(to_numpy(actual)), np.asarray(to_numpy(expected))
    t = tol(a.dtype) if hasattr(a, "dtype") else {"rtol": 1e-7, "atol": 0}
    np.testing.assert_allclose(
        a, e, rtol=t["rtol"] if rtol is None else rtol, atol=t["atol"] if atol is None else atol
    )


def rand(xp, shape, *, seed=0, dtype="float32", low=-1.0, high=1.0):
    """Uniform random array on backend ``xp`` (drawn with NumPy, so equal on every backend)."""
    data = np.random.default_rng(seed).uniform(low, high, size=shape).astype(dtype)
    return xp.asarray(data)
