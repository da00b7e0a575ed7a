import numpy as np
import pytest

from kizzasi_lite.backends import (
    available_backends,
    backend_name,
    dtype_name,
    get_namespace,
    loops_are_cheap,
    namespace,
    sliding_windows,
    to_numpy,
)
from kizzasi_lite.backends.random import Generator
from kizzasi_lite.errors import BackendUnavailableError, KizzasiError
from tests.conftest import assert_close


def test_namespace_round_trip(xp):
    x = xp.asarray([1.0, 2.0], dtype=xp.float32)
    assert backend_name(namespace(x)) == backend_name(xp)
    assert dtype_name(x.dtype) == "float32"
    np.testing.assert_array_equal(to_numpy(x), [1.0, 2.0])


def test_numpy_namespace_names_itself():
    """Our NumPy namespace prints as itself, not as the array_api_compat module it extends."""
    xp = get_namespace("numpy")
    assert "kizzasi_lite.backends.numpy" in repr(xp)
    assert "array_api_compat" not in repr(xp)


def test_unknown_backend_is_a_kizzasi_error():
    with pytest.raises(KizzasiError, match="backend must be one of"):
        get_namespace("tensorflow")


def test_cupy_unavailable_says_why():
    if "cupy" in available_backends():
        pytest.skip("cupy is available here")
    with pytest.raises(BackendUnavailableError, match="cupy"):
        get_namespace("cupy")


def test_generator_is_identical_on_every_backend(xp):
    a = Generator(7, xp).normal((3, 4), dtype=xp.float64)
    b = Generator(7, get_namespace("numpy")).normal((3, 4), dtype=np.float64)
    assert_close(a, xp.asarray(to_numpy(b)), xp=xp)


def test_standard_gaps_are_filled(xp):
    x = xp.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=xp.float32)
    c = xp.cumulative_sum(x, axis=1, include_initial=True)
    np.testing.assert_allclose(to_numpy(c), [[0, 1, 3, 6], [0, 4, 9, 15]])
    n = xp.linalg.vector_norm(x, axis=-1)
    np.testing.assert_allclose(to_numpy(n), np.linalg.norm(to_numpy(x), axis=-1), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(xp.clip(x, min=2.0, max=5.0)), np.clip(to_numpy(x), 2, 5))
    assert to_numpy(xp.matrix_transpose(x)).shape == (3, 2)
    assert xp.isdtype(x.dtype, "real floating")
    z = xp.zeros((2,), dtype=xp.float64)
    assert dtype_name(z.dtype) == "float64"


def test_namespace_lookup_is_remembered_per_type_and_still_checks_mixtures(xp):
    x = xp.asarray([1.0, 2.0])
    assert namespace(x) is namespace(x, 1.0, None) is namespace(x, x)  # second call: the cache
    other = get_namespace("array_api_strict" if backend_name(xp) != "array_api_strict" else "numpy")
    with pytest.raises(TypeError):
        namespace(x, other.asarray([1.0]))
    with pytest.raises(TypeError):
        namespace(1.0)


def test_loops_are_cheap_for_plain_numpy_backed_arrays_only(xp):
    from kizzasi_lite.autodiff import value_and_grad

    x = xp.asarray([1.0, 2.0])
    seen = []

    def f(p):
        seen.append(loops_are_cheap(x, p["w"]))
        return namespace(p["w"]).sum(p["w"] * x)

    value_and_grad(f, {"w": x})
    assert seen == [False]  # autodiff tensors take the chunked path
    assert loops_are_cheap(x, 1.0, None) == (backend_name(xp) in ("numpy", "array_api_strict"))


@pytest.mark.parametrize("shape", [(9, 5), (2, 9, 5), (2, 3, 4, 5), (4, 5)])
def test_sliding_windows_are_read_only_views_of_the_steps(xp, shape):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)[..., ::-1, :]  # any strides
    w = sliding_windows(x if backend_name(xp) == "numpy" else xp.asarray(x.copy()), 4)
    if backend_name(xp) != "numpy":
        assert w is None  # no strided views: the caller takes its general path
        return
    t = shape[-2]
    expected = np.stack([x[..., j : j + 4, :] for j in range(t - 3)], axis=-3)  # (.., T-3, 4, C)
    assert w.shape == expected.shape and np.array_equal(w, expected)
    assert np.shares_memory(w, x) and not w.flags.writeable


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize(
    "bounds",
    [(-1.0, 1.0), (0, None), (None, 0.5), (None, None), ("array", "array"), ("array", 2.0)],
)
def test_numpy_clip_equals_the_compat_clip(dtype, bounds):
    """The NumPy namespace's faster ``clip`` (ufuncs for floating arrays) gives what
    ``array_api_compat.numpy.clip`` gives: values, dtype, shape and NaN alike."""
    import array_api_compat.numpy as compat

    xp = get_namespace("numpy")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 4)) * 3).astype(dtype)
    if dtype != "int32":
        x[0, 0] = np.nan
    lo, hi = (
        (rng.standard_normal(4).astype(dtype) - 1.0) if b == "array" and i == 0
        else (rng.standard_normal(4).astype(dtype) + 1.0) if b == "array"
        else b
        for i, b in enumerate(bounds)
    )  # fmt: skip
    got, want = xp.clip(x, lo, hi), compat.clip(x, lo, hi)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(xp.clip(x, min=lo, max=hi), want)


def _same(got, want):
    """Equal values, dtype, shape and kind of result (array or NumPy scalar)."""
    assert type(got) is type(want) and got.dtype == want.dtype and np.shape(got) == np.shape(want)
    np.testing.assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore:.*(empty slice|invalid value):RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "bool"])
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 0, 3), (2, 3, 4)])
def test_numpy_fast_paths_equal_the_compat_functions(dtype, shape):
    """``sum``, ``max``, ``mean``, ``expand_dims`` and ``asarray`` of the NumPy namespace (ufuncs
    and methods where the arguments allow) give what ``array_api_compat.numpy`` gives, errors
    included."""
    import array_api_compat.numpy as compat

    xp = get_namespace("numpy")
    x = np.asarray(np.random.default_rng(0).standard_normal(shape) * 4).astype(dtype)
    if x.size and dtype.startswith("float"):
        x.flat[0] = np.nan if dtype == "float64" else x.flat[0]
    axes = [None, *range(-len(shape), len(shape)), (0, len(shape) - 1)] if shape else [None]
    for name in ("sum", "max", "mean"):
        if name == "mean" and dtype in ("int32", "bool"):
            continue  # the standard's mean is for floating arrays
        for axis in axes:
            for keepdims in (False, True):
                kw = {"axis": axis, "keepdims": keepdims}
                try:
                    want = getattr(compat, name)(x, **kw)
                except ValueError:  # max of nothing
                    with pytest.raises(ValueError):
                        getattr(xp, name)(x, **kw)
                    continue
                _same(getattr(xp, name)(x, **kw), want)
    for axis in range(-len(shape) - 1, len(shape) + 1):
        _same(xp.expand_dims(x, axis=axis), compat.expand_dims(x, axis=axis))
        assert np.shares_memory(xp.expand_dims(x, axis=axis), x) or not x.size
    assert xp.asarray(x) is x and xp.asarray(x, dtype=x.dtype) is x
    _same(xp.asarray(x, dtype=xp.float64), compat.asarray(x, dtype=xp.float64))
    assert not np.shares_memory(xp.asarray(x, copy=True), x) or not x.size


def test_numpy_reshape_keeps_the_standard_copy_semantics():
    """The NumPy namespace's faster ``reshape`` (the array method) still follows the standard."""
    xp = get_namespace("numpy")
    x = xp.reshape(xp.arange(6.0), (2, 3))
    view = xp.reshape(x, (3, 2))
    assert view.shape == (3, 2) and np.shares_memory(view, x)  # copy=None: a view when possible
    copied = xp.reshape(x, (6,), copy=True)
    assert not np.shares_memory(copied, x)
    with pytest.raises(ValueError):
        xp.reshape(x.mT, (6,), copy=False)  # a transposed layout cannot be a flat view
    np.testing.assert_array_equal(xp.reshape(x.mT, (6,)), [0, 3, 1, 4, 2, 5])  # copy=None copies
    assert namespace(x) is xp


@pytest.mark.filterwarnings("error")  # array_api_strict warns when its dtypes meet NumPy's
def test_dtype_names_of_every_backend_and_again_from_memory(xp):
    for _ in range(2):  # the second time from what dtype_name remembered
        for name in ("float32", "float64", "int32", "int64", "bool"):
            assert dtype_name(getattr(xp, name)) == name
        assert dtype_name(np.dtype("float32")) == "float32"
    if backend_name(xp) == "mlx":
        assert dtype_name(xp.bfloat16) == "bfloat16"  # its name holds "float16" too
