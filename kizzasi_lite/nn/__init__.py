"""Building blocks shared by the architectures. Pure functions of arrays; weights in torch layout.

Shapes: ``x`` is ``(..., C)`` with channels last; linear weights are ``(out, in)`` as in torch and
Hugging Face checkpoints, so checkpoint tensors are used as they are.
"""

from __future__ import annotations

from typing import Any

from kizzasi_lite.autodiff import custom, plain
from kizzasi_lite.backends import namespace, overflow_quiet, plain_numpy, sliding_windows


def linear(x: Any, weight: Any, bias: Any = None) -> Any:
    """``x @ weight.T + bias``: ``(..., in)`` -> ``(..., out)`` with ``weight`` of shape (out, in)."""
    y = x @ weight.mT  # (..., out); the operator and attribute skip two wrapper calls
    return y if bias is None else y + bias


def sigmoid(x: Any) -> Any:
    """Logistic function as ``(1 + tanh(x / 2)) / 2``: no overflow, and 3 array ops (not 8).

    Far in the negative tail (``x < -17`` in float32) it returns 0 where ``exp(x)`` would be a
    tiny positive number: the absolute error stays below the dtype's epsilon.
    """
    xp = namespace(x)
    return 0.5 * xp.tanh(0.5 * x) + 0.5


def silu(x: Any) -> Any:
    """SiLU / swish ``x * sigmoid(x)`` as ``m / (-1 - exp(m))`` with ``m = -x``.

    Four array ops with one ``exp``: on NumPy float32 this runs ~1.4x faster on large arrays
    than the same form with ``m`` capped by ``minimum`` (as fast as an ``exp``). Below about
    -88.7 in float32 (-709 in float64) ``exp(-x)`` overflows to inf and silu returns -0.0, as
    torch does (the true value is smaller than 1.3e-36 in magnitude), without NumPy's
    overflow warning; ``-inf`` gives nan, as torch. Under autodiff it is one operation whose
    gradient is ``s + y (1 - s)``, with ``y`` the output and ``s = sigmoid(x) = -1 / (-1 -
    exp(m))``: no tape of its four ops.
    """
    xv = plain(x)
    xp = namespace(xv)
    m = -xv
    with overflow_quiet(xp):  # exp(m) = inf: m / d = -0 (nan at -inf)
        d = -1.0 - xp.exp(m)  # -(1 + exp(-x))
        y = m / d
    if xv is x:  # not being differentiated
        return y

    def vjp(g: Any) -> Any:
        s = -1.0 / d  # sigmoid(x)
        return g * (s + y * (1.0 - s))

    return custom(y, [(x, vjp)])


# Numbers up to which an activation takes its form with the fewest array calls, which at a
# one-stream step's few hundred numbers costs least; beyond, the form with the fastest loops
# (NumPy float32, per number: tanh ~4 ns, exp ~2, logaddexp ~20, one add or product ~0.2).
_FEW_NUMBERS = 1024


def silu_of_half(h: Any) -> Any:
    """``silu(2 h)`` of an input computed halved: ``h + h * tanh(h)`` (3 array ops) for up to
    ``_FEW_NUMBERS`` numbers, else ``h * 2 / (1 + exp(-2 h))`` (5 ops, but ``exp`` takes half
    as long as ``tanh``: 1.15 against 1.6 ms over (1024, 544)). Where ``-2 h`` or its ``exp``
    overflows (``silu(2 h)`` below 1.3e-36 in magnitude) it gives ``h * 0``, -0.0."""
    xp = namespace(h)
    if h.size <= _FEW_NUMBERS:
        return h + h * xp.tanh(h)
    with overflow_quiet(xp):
        return h * (2.0 / (1.0 + xp.exp(h * -2.0)))


def softplus(x: Any) -> Any:
    """``log(1 + exp(x))`` computed stably: ``max(x, 0) + log1p(exp(-|x|))``.

    ``log1p(e)`` is taken as ``log(u) - ((u - 1) - e) / u`` with ``u = 1 + e`` (the rounding of
    ``u`` corrected to first order): as precise as ``log1p``, and on NumPy float32 about 4x
    faster (``log1p`` has no vectorised loop), which halves softplus. A plain array of at most
    ``_FEW_NUMBERS`` numbers (a step's) takes one call, ``logaddexp(x, 0)``, equally precise.
    """
    xp = namespace(x)
    if x.size <= _FEW_NUMBERS and plain(x) is x:
        return xp.logaddexp(x, 0.0)
    ax = xp.abs(x)
    e = xp.exp(-ax)
    u = 1.0 + e
    return 0.5 * (x + ax) + (xp.log(u) - ((u - 1.0) - e) / u)  # 0.5 * (x + |x|) = max(x, 0)


def rms_norm(x: Any, weight: Any, eps: float) -> Any:
    """RMSNorm over the last axis: ``x / sqrt(mean(x^2) + eps) * weight``."""
    return x * _inverse_rms(x, eps) * weight


def _inverse_rms(x: Any, eps: float) -> Any:
    """``1 / sqrt(mean(x^2, axis=-1) + eps)``: (..., C) -> (..., 1).

    ``vecdot`` is one call with no temporary ``x * x`` (on NumPy 3x faster than ``sum``, and
    faster than the batched ``x @ x`` it replaces on rows of a few hundred numbers).
    """
    xp = namespace(x)
    return (xp.vecdot(x, x)[..., None] * (1.0 / x.shape[-1]) + eps) ** -0.5  # (..., 1)


def gated_rms_norm(x: Any, gate: Any, weight: Any, eps: float, group_size: int) -> Any:
    """Mamba2's gated RMSNorm: ``rms_norm(x * silu(gate))`` over groups of ``group_size`` channels."""
    xp = namespace(x)
    y = x * silu(gate)  # (..., C)
    c = y.shape[-1]
    if group_size == c:  # one group: a plain RMSNorm (two reshapes fewer)
        return rms_norm(y, weight, eps)
    grouped = xp.reshape(y, (*y.shape[:-1], c // group_size, group_size))  # (..., G, C/G)
    normed = xp.reshape(grouped * _inverse_rms(grouped, eps), y.shape)  # (..., C)
    return normed * weight


def layer_norm(x: Any, weight: Any, bias: Any, eps: float) -> Any:
    """LayerNorm over the last axis (biased variance, as torch): ``d * w / sqrt(d.d / C + eps)
    + bias`` with ``d = x - mean(x)``, the sums of squares one ``vecdot`` (7 array calls)."""
    xp = namespace(x)
    scale = 1.0 / x.shape[-1]
    d = x - xp.sum(x, axis=-1, keepdims=True) * scale  # (..., C)
    return d * (1.0 / xp.sqrt(xp.vecdot(d, d)[..., None] * scale + eps)) * weight + bias


def previous_tokens(x: Any, prev: Any) -> Any:
    """``x_{t-1}`` for every t of ``x`` (B, T, C), ``prev`` (B, C) being the one before t=0
    (RWKV's token shift); a single step needs no concat."""
    xp = namespace(x)
    first = xp.expand_dims(prev, axis=1)  # (B, 1, C)
    return first if x.shape[1] == 1 else xp.concat([first, x[:, :-1, :]], axis=1)  # (B, T, C)


def group_norm(x: Any, weight: Any, bias: Any, groups: int, eps: float) -> Any:
    """GroupNorm of ``(..., C)`` with ``groups`` groups of ``C / groups`` channels (torch's math)."""
    xp = namespace(x)
    c = x.shape[-1]
    g = xp.reshape(x, (*x.shape[:-1], groups, c // groups))  # (..., G, C/G)
    mu = xp.mean(g, axis=-1, keepdims=True)  # (..., G, 1)
    d = g - mu
    var = xp.mean(d * d, axis=-1, keepdims=True)  # (..., G, 1)
    return xp.reshape(d / xp.sqrt(var + eps), x.shape) * weight + bias


def transposed(a: Any) -> Any:
    """``a`` (M, N) as a C-ordered (N, M) array: reshaping the transposed view copies it, so a
    product with one of its rows runs along contiguous numbers (on NumPy ~1.5x faster than
    along a strided row)."""
    xp = namespace(a)
    m, n = a.shape
    return xp.reshape(xp.reshape(xp.matrix_transpose(a), (m * n,)), (n, m))


def conv_taps(weight: Any) -> Any:
    """A depthwise conv's ``weight`` (C, 1, K) as taps (K, C), time first, each tap's row
    contiguous (:func:`transposed`)."""
    return transposed(weight[:, 0, :])


def causal_conv1d(x: Any, weight: Any, bias: Any, state: Any) -> tuple[Any, Any]:
    """Depthwise causal convolution over time with the last ``K-1`` inputs carried as state.

    ``x`` (B, T, C), ``weight`` (C, 1, K) as torch's ``Conv1d(groups=C)``, ``bias`` (C,) or None,
    ``state`` (B, K-1, C): the inputs before ``x``. Returns ``y`` (B, T, C) and the new state.
    """
    xp = namespace(x, weight, state)
    t = x.shape[1]
    xx = xp.concat([state, x], axis=1)  # (B, K-1+T, C)
    y = window_dot(xx, conv_taps(weight))  # (B, T, C)
    if bias is not None:
        y = y + bias
    return y, xx[:, t:, :]  # (B, T, C), (B, K-1, C)


def outer(u: Any, v: Any) -> Any:
    """``u[..., :, None] * v[..., None, :]``: (..., N) and (..., C) -> (..., N, C), the outer
    products of matching rows. On plain NumPy arrays one ``einsum``: NumPy's broadcast product
    takes ~1.6x as long over a block of Mamba's scan, (64, 16, 512)."""
    if plain_numpy(u, v):
        return namespace(u).einsum("...n,...c->...nc", u, v)
    return u[..., :, None] * v[..., None, :]


def window_dot(xx: Any, taps: Any) -> Any:
    """``sum_k xx[:, k : k + T, :] * taps[k]``: a depthwise causal conv's taps (K, C) over its
    padded input ``xx`` (B, T + K - 1, C), (B, T, C).

    On plain NumPy arrays one ``einsum`` over the input's windows (a strided view), with no
    (B, T, C) product per tap: over (431, 544), a segment of the benchmark's forward, 2.4x
    faster than the K products and sums the other backends and autodiff take (and windows
    laid out (K, C), each tap's row contiguous, 1.35x faster than (C, K)).
    """
    xp = namespace(xx, taps)
    k = taps.shape[0]
    t = xx.shape[1] - k + 1
    windows = sliding_windows(xx, k) if t > 0 else None  # (B, T, K, C), or None
    if windows is not None:
        return xp.einsum("btkc,kc->btc", windows, taps)
    y = xx[:, 0:t, :] * taps[0, :]  # (B, T, C)
    for j in range(1, k):
        y = y + xx[:, j : j + t, :] * taps[j, :]
    return y


def causal_conv1d_step(x: Any, weight: Any, bias: Any, state: Any) -> tuple[Any, Any]:
    """One step of :func:`causal_conv1d`: ``x`` (B, C), ``state`` (B, K-1, C) -> (B, C), state."""
    taps = weight[:, 0, :].mT  # (K, C): conv_taps' view, not its contiguous copy, for one step
    y, state = conv_step(x, taps, state)  # (B, C), (B, K-1, C)
    if bias is not None:
        y = y + bias
    return y, state


def conv_step(x: Any, taps: Any, state: Any) -> tuple[Any, Any]:
    """:func:`causal_conv1d_step` on the conv's ``taps`` (K, C) and without its bias: ``x``
    (B, C) and ``state`` (B, K-1, C) make the window (B, K, C); returns its dot with the taps
    (B, C) and the new state, the window's last K-1 rows (a view). On plain NumPy arrays the
    dot is one ``einsum`` over the window itself: 5.1 against 7.9 us at one stream of 544
    channels for :func:`window_dot`'s over its one-window view (alike at 1024 streams)."""
    xp = namespace(x, taps, state)
    xx = xp.concat([state, x[:, None, :]], axis=1)  # (B, K, C)
    if plain_numpy(xx, taps):
        return xp.einsum("bkc,kc->bc", xx, taps), xx[:, 1:, :]
    return window_dot(xx, taps)[:, 0, :], xx[:, 1:, :]
