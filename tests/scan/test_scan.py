import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizzasi_lite.backends import get_namespace
from kizzasi_lite.scan import scan_chunked, scan_parallel, scan_sequential
from tests.conftest import assert_close, rand

KERNELS = [scan_parallel, lambda a, b, h: scan_chunked(a, b, h, chunk=8)]


def reference(a, b, h0):
    h, hs = h0, []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        hs.append(h)
    return np.stack(hs, axis=1), h


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel", [scan_sequential, *KERNELS])
def test_kernels_match_definition(xp, kernel, dtype):
    a = rand(xp, (2, 37, 3, 4), seed=1, low=0.0, high=1.0, dtype=dtype)
    b = rand(xp, (2, 37, 3, 4), seed=2, dtype=dtype)
    h0 = rand(xp, (2, 3, 4), seed=3, dtype=dtype)
    hs, h = kernel(a, b, h0)
    ref_hs, ref_h = reference(*(np.asarray(v) for v in map(_np, (a, b, h0))))
    assert_close(hs, xp.asarray(ref_hs), xp=xp)
    assert_close(h, xp.asarray(ref_h), xp=xp)


def _np(x):
    from kizzasi_lite.backends import to_numpy

    return to_numpy(x)


def test_empty_sequence_returns_initial_state(xp):
    b = xp.zeros((2, 0, 3))
    h0 = rand(xp, (2, 3))
    for kernel in [scan_sequential, *KERNELS]:
        hs, h = kernel(b, b, h0)
        assert hs.shape == (2, 0, 3)
        assert_close(h, h0)


def test_broadcast_decay(xp):
    a = rand(xp, (1, 20, 1), low=0.5, high=1.0)
    b = rand(xp, (3, 20, 5), seed=4)
    h0 = xp.zeros((3, 5), dtype=xp.float32)
    ref = scan_sequential(a, b, h0)
    for kernel in KERNELS:
        out = kernel(a, b, h0)
        assert_close(out[0], ref[0])
        assert_close(out[1], ref[1])


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),
    length=st.integers(1, 70),
    width=st.integers(1, 4),
    chunk=st.integers(1, 17),
    regime=st.sampled_from(["near0", "near1", "mixed", "signed"]),
    seed=st.integers(0, 2**16),
)
def test_chunked_and_parallel_agree_with_sequential(batch, length, width, chunk, regime, seed):
    xp = get_namespace("numpy")
    rng = np.random.default_rng(seed)
    shape = (batch, length, width)
    a = {
        "near0": rng.uniform(0, 1e-3, shape),
        "near1": 1 - rng.uniform(0, 1e-4, shape),
        "mixed": rng.choice([1e-6, 0.5, 1 - 1e-6], shape),
        "signed": rng.uniform(-1, 1, shape),
    }[regime]
    b = rng.normal(size=shape)
    h0 = rng.normal(size=(batch, width))
    ref_hs, ref_h = scan_sequential(xp.asarray(a), xp.asarray(b), xp.asarray(h0))
    for hs, h in [
        scan_chunked(xp.asarray(a), xp.asarray(b), xp.asarray(h0), chunk=chunk),
        scan_parallel(xp.asarray(a), xp.asarray(b), xp.asarray(h0)),
    ]:
        np.testing.assert_allclose(hs, ref_hs, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(h, ref_h, rtol=1e-10, atol=1e-10)


def test_a_chunk_below_one_is_a_config_error():
    # a bare ValueError before: not a KizzasiError
    from kizzasi_lite.errors import ConfigError

    a = np.ones((1, 4, 2))
    with pytest.raises(ConfigError, match="chunk must be >= 1, got 0"):
        scan_chunked(a, a, np.zeros((1, 2)), chunk=0)
