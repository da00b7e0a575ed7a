import numpy as np
import pytest

from kizzasi_lite.autodiff import Tensor, value_and_grad
from kizzasi_lite.backends import get_namespace, namespace, to_numpy
from kizzasi_lite.errors import KizzasiError
from kizzasi_lite.nn import gated_rms_norm, layer_norm, rms_norm, silu, softplus
from kizzasi_lite.scan import scan_chunked, scan_parallel, scan_sequential
from tests.gradcheck import check_grad


def params(xp, **shapes):
    rng = np.random.default_rng(0)
    return {k: xp.asarray(rng.uniform(0.2, 0.9, size=s)) for k, s in shapes.items()}


FUNCTIONS = {
    "arith": lambda p: p["a"] * p["b"] - p["a"] / (p["b"] + 2.0) + 3.0 - p["b"] ** 2.0,
    "broadcast": lambda p: p["a"] * p["c"] + p["c"],
    "unary": lambda p: (
        namespace(p["a"]).exp(p["a"])
        + namespace(p["a"]).log(p["a"])
        + namespace(p["a"]).sqrt(p["a"])
        + namespace(p["a"]).tanh(p["a"])
        + namespace(p["a"]).sin(p["a"]) * namespace(p["a"]).cos(p["b"])
        + namespace(p["a"]).log1p(p["a"])
        + namespace(p["a"]).abs(p["a"] - 0.5)
        + namespace(p["a"]).square(p["a"])
        + namespace(p["a"]).expm1(p["b"])
    ),
    "nn": lambda p: silu(p["a"]) + softplus(p["b"]) + rms_norm(p["a"], p["c"][0], 1e-6),
    "norms": lambda p: (
        layer_norm(p["a"], p["c"][0], p["c"][0], 1e-5)
        + gated_rms_norm(p["a"], p["b"], p["c"][0], 1e-6, 2)
    ),
    "matmul": lambda p: namespace(p["a"]).matmul(
        p["a"], namespace(p["a"]).matrix_transpose(p["b"])
    ),
    "matvec": lambda p: p["a"] @ p["c"][0],
    "vecdot": lambda p: (
        namespace(p["a"]).vecdot(p["c"], p["a"] * p["b"])  # (1, 4) with (3, 4): broadcast
        + namespace(p["a"]).vecdot(p["a"], p["b"], axis=-2)[:3]
    ),
    "reductions": lambda p: (
        namespace(p["a"]).sum(p["a"], axis=1, keepdims=True) * namespace(p["a"]).mean(p["b"])
        + namespace(p["a"]).max(p["a"] * p["b"], axis=0)
        + namespace(p["a"]).min(p["b"], axis=1, keepdims=True)
    ),
    "shapes": lambda p: namespace(p["a"]).reshape(
        namespace(p["a"]).permute_dims(
            namespace(p["a"]).expand_dims(p["a"], axis=0) * namespace(p["a"]).flip(p["b"], axis=1),
            (2, 1, 0),
        ),
        (-1,),
    ),
    "concat_stack": lambda p: (
        namespace(p["a"]).concat([p["a"], p["b"] * 2.0], axis=1)
        + namespace(p["a"]).stack([p["a"], p["b"]], axis=2)[:, :, 1].__rmul__(1.0)[:, :1]
    ),
    "indexing": lambda p: (
        p["a"][1:, ::2] * p["b"][0, None, 1:4:2]
        + p["a"][..., 1:, -1:]
        + p["b"][::-1, 2:][:2, :1]
        + p["a"][2, :2]
    ),
    "where_max_clip": lambda p: (
        namespace(p["a"]).where(p["a"] > 0.5, p["a"] * 3.0, p["b"])
        + namespace(p["a"]).maximum(p["a"], p["b"])
        + namespace(p["a"]).clip(p["a"], min=0.4, max=0.7)
    ),
    "cumsum": lambda p: (
        namespace(p["a"]).cumulative_sum(p["a"] * p["b"], axis=1)
        + namespace(p["a"]).cumulative_sum(p["b"], axis=0, include_initial=True)[1:]
    ),
    "tril": lambda p: namespace(p["a"]).tril(
        p["a"] @ namespace(p["a"]).matrix_transpose(p["b"]), k=-1
    ),
    "scans": lambda p: (
        scan_chunked(
            p["a"][None, :, :], p["b"][None, :, :], p["c"][0, :1] * p["a"][:1, :], chunk=2
        )[0]
        + scan_parallel(p["a"][None], p["b"][None], p["a"][:1])[0]
        + scan_sequential(p["a"][None], p["b"][None], p["b"][:1])[1]
    ),
    "fft": lambda p: namespace(p["a"]).fft.irfft(
        namespace(p["a"]).fft.rfft(p["a"], n=8, axis=1)
        * namespace(p["a"]).fft.rfft(p["b"], n=8, axis=1),
        n=8,
        axis=1,
    ),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_gradients_match_finite_differences(name):
    xp = get_namespace("numpy")
    p = params(xp, a=(3, 4), b=(3, 4), c=(1, 4))
    w = xp.asarray(np.random.default_rng(1).normal(size=(64,)))

    def loss(q):
        y = FUNCTIONS[name](q)
        ns = namespace(y)
        flat = ns.reshape(y, (-1,))
        return ns.sum(flat * w[: flat.shape[0]])

    check_grad(loss, p, entries=12, rtol=1e-6)


def test_gradient_on_every_backend(xp):
    p = {"w": xp.asarray([[0.5, -1.0], [2.0, 0.25]], dtype=xp.float32)}
    x = xp.asarray([1.0, 2.0], dtype=xp.float32)

    def loss(q):
        y = silu(q["w"] @ x)
        return namespace(y).sum(y * y)

    value, grads = value_and_grad(loss, p)
    w = to_numpy(p["w"]).astype(np.float64)
    xv = np.array([1.0, 2.0])
    h = w @ xv
    s = 1 / (1 + np.exp(-h))
    y = h * s
    dy = 2 * y * (s + h * s * (1 - s))
    np.testing.assert_allclose(to_numpy(grads["w"]), np.outer(dy, xv), rtol=1e-5)
    assert type(grads["w"]) is type(p["w"])
    assert np.isclose(float(to_numpy(value)), float(np.sum(y * y)), rtol=1e-5)


def test_arrays_passed_as_arguments_are_constants_on_every_backend(xp):
    # data on the left of an operator: the device backends' operators refuse a tensor on their
    # right, so value_and_grad hands the arrays among its arguments to fn as constant tensors
    p = {"w": xp.asarray([[0.5, -1.0], [2.0, 0.25]], dtype=xp.float32)}
    x = xp.asarray([[1.0, 2.0]], dtype=xp.float32)
    steps = xp.asarray([3], dtype=xp.int64)

    def loss(q, data):
        y = data["x"] @ q["w"] - data["x"] * 2.0  # (1, 2), plain x first
        assert isinstance(data["x"], Tensor) and not isinstance(data["steps"], Tensor)
        return namespace(y).sum(y * y)

    value, grads = value_and_grad(loss, p, {"x": x, "steps": steps})
    w, xv = to_numpy(p["w"]).astype(np.float64), np.array([[1.0, 2.0]])
    y = xv @ w - 2.0 * xv
    np.testing.assert_allclose(to_numpy(grads["w"]), xv.T @ (2 * y), rtol=1e-5)
    assert np.isclose(float(to_numpy(value)), float(np.sum(y * y)), rtol=1e-5)
    # a value computed from constants alone has no gradient
    value, grads = value_and_grad(lambda q, d: namespace(d).sum(d * d), p, x)
    assert not isinstance(value, Tensor) and float(to_numpy(value)) == 5.0
    np.testing.assert_allclose(to_numpy(grads["w"]), np.zeros((2, 2)))


def test_unsupported_function_is_a_clear_error():
    xp = get_namespace("numpy")
    with pytest.raises(KizzasiError, match="no gradient rule for xp.sort"):
        value_and_grad(
            lambda q: namespace(q["a"]).sum(namespace(q["a"]).sort(q["a"])), params(xp, a=(3,))
        )


def test_constants_and_unused_parameters_get_zero_gradients():
    xp = get_namespace("numpy")
    p = params(xp, a=(2,), b=(2,))
    value, grads = value_and_grad(lambda q: namespace(q["a"]).sum(q["a"] * 2.0), p)
    np.testing.assert_allclose(grads["a"], [2.0, 2.0])
    np.testing.assert_allclose(grads["b"], [0.0, 0.0])
    assert not isinstance(value, Tensor)


def test_clip_sends_gradients_to_tensor_bounds():
    # the bounds' gradients were dropped without a word: d/dlo of sum(clip(x, lo, hi)) is the
    # number of entries held at lo
    rng = np.random.default_rng(3)
    p = {
        "x": np.linspace(-2.0, 2.0, 12).reshape(3, 4) + 0.01,
        "lo": rng.uniform(-1.5, -0.5, size=(3, 1)),
        "hi": rng.uniform(0.5, 1.5, size=(4,)),
    }

    def loss(q):
        xp = namespace(q["x"])
        return xp.sum(xp.clip(q["x"], min=q["lo"], max=q["hi"]) ** 2)

    check_grad(loss, p, entries=12, rtol=1e-6)
    _, g = value_and_grad(loss, p)
    assert float(np.sum(np.abs(g["lo"]))) > 0 and float(np.sum(np.abs(g["hi"]))) > 0
