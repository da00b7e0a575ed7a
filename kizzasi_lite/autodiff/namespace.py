"""``AutodiffNamespace``: the array API over :class:`~.tensor.Tensor`, one vjp rule per function.

Each rule computes its value with the wrapped backend namespace and records, for every tensor
input, a vector-Jacobian product ``vjp(g) -> gradient for that input``. Inputs that are plain
arrays or Python scalars are constants: nothing is recorded for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kizzasi_lite.autodiff.tensor import Tensor, _has_tensor, _val, _vals
from kizzasi_lite.errors import KizzasiError


class _Sub:
    """A sub-namespace (``linalg``, ``fft``) with differentiable overrides."""

    def __init__(self, base: Any, overrides: dict[str, Callable]) -> None:
        self._base, self._overrides = base, overrides

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return _guard(getattr(self._base, name), name)


def _guard(fn: Any, name: str) -> Any:
    if not callable(fn) or isinstance(fn, type):
        return fn

    def guarded(*args, **kwargs):
        if _has_tensor(args) or _has_tensor(list(kwargs.values())):
            raise KizzasiError(
                f"autodiff has no gradient rule for xp.{name}; write the computation with "
                "differentiable array API functions or add a rule in kizzasi_lite/autodiff"
            )
        return fn(*args, **kwargs)

    return guarded


class AutodiffNamespace:
    """The array API over :class:`Tensor`, delegating the numbers to a backend namespace."""

    # functions that are not differentiable but accept tensors: they see the plain values
    _NONDIFF = frozenset(
        "isfinite isnan isinf sign floor ceil round trunc argmax argmin equal not_equal less "
        "less_equal greater greater_equal logical_and logical_or logical_not all any "
        "zeros_like ones_like full_like empty_like".split()
    )

    def __init__(self, base: Any) -> None:
        self.base = base
        self.linalg = _Sub(
            base.linalg,
            {
                "matmul": self.matmul,
                "matrix_transpose": self.matrix_transpose,
                "vector_norm": self._vector_norm,
            },
        )
        self.fft = _Sub(getattr(base, "fft", None), {"rfft": self._rfft, "irfft": self._irfft})

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.base, name)
        if name in self._NONDIFF:
            return lambda *a, **k: fn(*_vals(a), **{n: _val(v) for n, v in k.items()})
        return _guard(fn, name)

    def __repr__(self) -> str:
        return f"<autodiff namespace over {getattr(self.base, '__name__', self.base)!r}>"

    # ------------------------------------------------------------------ plumbing
    def _node(self, value: Any, pairs: Sequence[tuple[Any, Callable | None]]) -> Any:
        """Record ``value`` computed from inputs with their vjps; constants need no node. A
        value computed from constants alone is a plain array, or a constant tensor
        (:meth:`constant`) where one of them was: data stays wrapped all the way through."""
        parents, vjps, lifted = [], [], False
        for inp, vjp in pairs:
            if isinstance(inp, Tensor):
                if inp.parents is None:  # a constant: no gradient to send back
                    lifted = True
                elif vjp is not None:
                    parents.append(inp)
                    vjps.append(vjp)
        if not parents:
            return self.constant(value) if lifted else value
        return Tensor(value, self, tuple(parents), tuple(vjps))

    def constant(self, value: Any) -> Tensor:
        """``value``, a backend array, as a tensor that records no gradient. Inputs and states
        are wrapped so because the device backends' operators (MLX, array_api_strict) refuse a
        tensor on their right (``x @ w`` with ``x`` plain and ``w`` a tensor raises ``TypeError``
        there, where NumPy defers to the tensor's reflected operator)."""
        return Tensor(value, self, None)

    def _unbroadcast(self, g: Any, shape: tuple) -> Any:
        xp = self.base
        while g.ndim > len(shape):
            g = xp.sum(g, axis=0)
        axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
        if axes:
            g = xp.sum(g, axis=axes, keepdims=True)
        return g

    def _shape(self, x: Any) -> tuple:
        return tuple(x.shape) if hasattr(x, "shape") else ()

    def asarray(self, obj: Any, /, **kwargs: Any) -> Any:
        if isinstance(obj, Tensor):
            dtype = kwargs.get("dtype")
            return obj if dtype is None or obj.dtype == dtype else self.astype(obj, dtype)
        return self.base.asarray(obj, **kwargs)

    # ------------------------------------------------------------------ elementwise
    def add(self, a, b):
        out = _val(a) + _val(b)
        return self._node(
            out,
            [
                (a, lambda g: self._unbroadcast(g, self._shape(a))),
                (b, lambda g: self._unbroadcast(g, self._shape(b))),
            ],
        )

    def subtract(self, a, b):
        out = _val(a) - _val(b)
        return self._node(
            out,
            [
                (a, lambda g: self._unbroadcast(g, self._shape(a))),
                (b, lambda g: self._unbroadcast(-g, self._shape(b))),
            ],
        )

    def _conj(self, v):
        # complex cotangents follow g = dL/dRe + i dL/dIm, so products take the conjugate
        if hasattr(v, "dtype") and self.base.isdtype(v.dtype, "complex floating"):
            return self.base.conj(v)
        return v

    def multiply(self, a, b):
        av, bv = _val(a), _val(b)
        return self._node(
            av * bv,
            [
                (a, lambda g: self._unbroadcast(g * self._conj(bv), self._shape(a))),
                (b, lambda g: self._unbroadcast(g * self._conj(av), self._shape(b))),
            ],
        )

    def divide(self, a, b):
        av, bv = _val(a), _val(b)
        out = av / bv
        return self._node(
            out,
            [
                (a, lambda g: self._unbroadcast(g / self._conj(bv), self._shape(a))),
                (b, lambda g: self._unbroadcast(-g * self._conj(out / bv), self._shape(b))),
            ],
        )

    def pow(self, a, b):
        xp, av, bv = self.base, _val(a), _val(b)
        out = av**bv
        return self._node(
            out,
            [
                (a, lambda g: self._unbroadcast(g * bv * av ** (bv - 1), self._shape(a))),
                (b, lambda g: self._unbroadcast(g * out * xp.log(av), self._shape(b))),
            ],
        )

    def maximum(self, a, b):
        xp, av, bv = self.base, _val(a), _val(b)
        out = xp.maximum(av, bv)
        pick_a = av >= bv
        return self._node(
            out,
            [
                (a, lambda g: self._unbroadcast(xp.where(pick_a, g, 0.0), self._shape(a))),
                (b, lambda g: self._unbroadcast(xp.where(pick_a, 0.0, g), self._shape(b))),
            ],
        )

    def minimum(self, a, b):
        xp, av, bv = self.base, _val(a), _val(b)
        out = xp.minimum(av, bv)
        pick_a = av <= bv
        return self._node(
            out,
            [
                (a, lambda g: self._unbroadcast(xp.where(pick_a, g, 0.0), self._shape(a))),
                (b, lambda g: self._unbroadcast(xp.where(pick_a, 0.0, g), self._shape(b))),
            ],
        )

    def logaddexp(self, a, b):
        xp, av, bv = self.base, _val(a), _val(b)
        out = xp.logaddexp(av, bv)
        return self._node(
            out,
            [
                (a, lambda g: self._unbroadcast(g * xp.exp(av - out), self._shape(a))),
                (b, lambda g: self._unbroadcast(g * xp.exp(bv - out), self._shape(b))),
            ],
        )

    def where(self, cond, a, b):
        xp, c = self.base, _val(cond)
        out = xp.where(c, _val(a), _val(b))
        return self._node(
            out,
            [
                (a, lambda g: self._unbroadcast(xp.where(c, g, 0.0), self._shape(a))),
                (b, lambda g: self._unbroadcast(xp.where(c, 0.0, g), self._shape(b))),
            ],
        )

    def clip(self, x, /, min=None, max=None):
        xp, xv, lo, hi = self.base, _val(x), _val(min), _val(max)
        out = xp.clip(xv, min=lo, max=hi)
        inside = out == xv
        pairs = [(x, lambda g: self._unbroadcast(xp.where(inside, g, 0.0), self._shape(x)))]
        for bound, value in ((min, lo), (max, hi)):  # a bound the output took: its gradient
            if isinstance(bound, Tensor):
                took = xp.logical_and(out == value, xp.logical_not(inside))
                shape = self._shape(bound)
                vjp = lambda g, t=took, s=shape: self._unbroadcast(xp.where(t, g, 0.0), s)  # noqa: E731
                pairs.append((bound, vjp))
        return self._node(out, pairs)

    def _unary(self, x, fn, dfn):
        xv = _val(x)
        out = fn(xv)
        return self._node(out, [(x, lambda g: dfn(g, xv, out))])

    def negative(self, x):
        return self._unary(x, lambda v: -v, lambda g, v, o: -g)

    def exp(self, x):
        return self._unary(x, self.base.exp, lambda g, v, o: g * o)

    def expm1(self, x):
        return self._unary(x, self.base.expm1, lambda g, v, o: g * (o + 1.0))

    def log(self, x):
        return self._unary(x, self.base.log, lambda g, v, o: g / v)

    def log1p(self, x):
        return self._unary(x, self.base.log1p, lambda g, v, o: g / (1.0 + v))

    def sqrt(self, x):
        return self._unary(x, self.base.sqrt, lambda g, v, o: g / (2.0 * o))

    def square(self, x):
        return self._unary(x, self.base.square, lambda g, v, o: 2.0 * g * v)

    def abs(self, x):
        return self._unary(x, self.base.abs, lambda g, v, o: g * self.base.sign(v))

    def sin(self, x):
        return self._unary(x, self.base.sin, lambda g, v, o: g * self.base.cos(v))

    def cos(self, x):
        return self._unary(x, self.base.cos, lambda g, v, o: -g * self.base.sin(v))

    def tanh(self, x):
        return self._unary(x, self.base.tanh, lambda g, v, o: g * (1.0 - o * o))

    def atan(self, x):
        return self._unary(x, self.base.atan, lambda g, v, o: g / (1.0 + v * v))

    def astype(self, x, dtype, /, **kwargs):
        xp = self.base
        return self._unary(x, lambda v: xp.astype(v, dtype), lambda g, v, o: xp.astype(g, v.dtype))

    # ------------------------------------------------------------------ linear algebra
    def matmul(self, a, b):
        xp, av, bv = self.base, _val(a), _val(b)
        out = xp.matmul(av, bv)
        a2 = av if av.ndim > 1 else xp.expand_dims(av, axis=0)  # (..., m, k)
        b2 = bv if bv.ndim > 1 else xp.expand_dims(bv, axis=-1)  # (..., k, n)

        def g2(g):  # the output gradient with the vector axes put back
            if av.ndim == 1:
                g = xp.expand_dims(g, axis=-2)
            if bv.ndim == 1:
                g = xp.expand_dims(g, axis=-1)
            return g

        def ga(g):
            r = xp.matmul(g2(g), xp.matrix_transpose(b2))  # (..., m, k)
            r = r[..., 0, :] if av.ndim == 1 else r
            return self._unbroadcast(r, tuple(av.shape))

        def gb(g):
            if bv.ndim == 2 and av.ndim > 2:  # a weight shared by a batch: one product, no sum
                k, n = bv.shape
                flat_a = xp.reshape(av, (-1, k))  # (batch * m, k)
                return xp.matmul(xp.matrix_transpose(flat_a), xp.reshape(g, (-1, n)))  # (k, n)
            r = xp.matmul(xp.matrix_transpose(a2), g2(g))  # (..., k, n)
            r = r[..., :, 0] if bv.ndim == 1 else r
            return self._unbroadcast(r, tuple(bv.shape))

        return self._node(out, [(a, ga), (b, gb)])

    def vecdot(self, a, b, /, *, axis=-1):
        xp, av, bv = self.base, _val(a), _val(b)
        out = xp.vecdot(av, bv, axis=axis)  # sum(conj(a) * b) over the (negative) axis

        def back(g):  # the output gradient with the summed axis put back
            return xp.expand_dims(g, axis=axis)

        return self._node(
            out,
            [
                (a, lambda g: self._unbroadcast(self._conj(back(g)) * bv, self._shape(a))),
                (b, lambda g: self._unbroadcast(back(g) * av, self._shape(b))),
            ],
        )

    def matrix_transpose(self, x):
        xp = self.base
        return self._unary(x, xp.matrix_transpose, lambda g, v, o: xp.matrix_transpose(g))

    def _vector_norm(self, x, /, *, axis=None, keepdims=False, ord=2):
        if ord != 2:
            raise KizzasiError(f"autodiff supports vector_norm with ord=2 only, got ord={ord}")
        return self.sqrt(self.sum(x * x, axis=axis, keepdims=keepdims))

    # ------------------------------------------------------------------ reductions
    def _axes(self, ndim: int, axis) -> tuple[int, ...]:
        if axis is None:
            return tuple(range(ndim))
        axes = axis if isinstance(axis, tuple | list) else (axis,)
        return tuple(sorted(a % ndim for a in axes))

    def _expand_back(self, g, xv, axis, keepdims):
        xp = self.base
        if not keepdims:
            for a in self._axes(xv.ndim, axis):
                g = xp.expand_dims(g, axis=a)
        return xp.broadcast_to(g, tuple(xv.shape))

    def sum(self, x, /, *, axis=None, keepdims=False, dtype=None):
        xv = _val(x)
        out = self.base.sum(xv, axis=axis, keepdims=keepdims)
        return self._node(out, [(x, lambda g: self._expand_back(g, xv, axis, keepdims))])

    def mean(self, x, /, *, axis=None, keepdims=False):
        xv = _val(x)
        out = self.base.mean(xv, axis=axis, keepdims=keepdims)
        n = 1
        for a in self._axes(xv.ndim, axis):
            n *= xv.shape[a]
        return self._node(out, [(x, lambda g: self._expand_back(g / n, xv, axis, keepdims))])

    def _extreme(self, x, fn, axis, keepdims):
        xp, xv = self.base, _val(x)
        out = fn(xv, axis=axis, keepdims=keepdims)

        def vjp(g):
            hit = xv == self._expand_back(out, xv, axis, keepdims)
            share = xp.astype(hit, xv.dtype)
            share = share / xp.sum(share, axis=axis, keepdims=True)  # ties split the gradient
            return self._expand_back(g, xv, axis, keepdims) * share

        return self._node(out, [(x, vjp)])

    def max(self, x, /, *, axis=None, keepdims=False):
        return self._extreme(x, self.base.max, axis, keepdims)

    def min(self, x, /, *, axis=None, keepdims=False):
        return self._extreme(x, self.base.min, axis, keepdims)

    def cumulative_sum(self, x, /, *, axis=None, dtype=None, include_initial=False):
        xp, xv = self.base, _val(x)
        axis = 0 if axis is None else axis % xv.ndim
        out = xp.cumulative_sum(xv, axis=axis, include_initial=include_initial)

        def vjp(g):
            if include_initial:
                idx = [slice(None)] * g.ndim
                idx[axis] = slice(1, None)
                g = g[tuple(idx)]
            return xp.flip(xp.cumulative_sum(xp.flip(g, axis=axis), axis=axis), axis=axis)

        return self._node(out, [(x, vjp)])

    # ------------------------------------------------------------------ shapes
    def reshape(self, x, /, shape, **kwargs):
        xp, xv = self.base, _val(x)
        return self._node(xp.reshape(xv, shape), [(x, lambda g: xp.reshape(g, tuple(xv.shape)))])

    def permute_dims(self, x, /, axes):
        xp = self.base
        inverse = [0] * len(axes)
        for i, a in enumerate(axes):
            inverse[a] = i
        return self._unary(
            x, lambda v: xp.permute_dims(v, axes), lambda g, v, o: xp.permute_dims(g, inverse)
        )

    def expand_dims(self, x, /, *, axis=0):
        xp = self.base
        return self._unary(
            x,
            lambda v: xp.expand_dims(v, axis=axis),
            lambda g, v, o: xp.reshape(g, tuple(v.shape)),
        )

    def squeeze(self, x, /, axis):
        xp = self.base
        return self._unary(
            x, lambda v: xp.squeeze(v, axis=axis), lambda g, v, o: xp.reshape(g, tuple(v.shape))
        )

    def broadcast_to(self, x, /, shape):
        xp = self.base
        return self._unary(
            x,
            lambda v: xp.broadcast_to(v, tuple(shape)),
            lambda g, v, o: self._unbroadcast(g, tuple(v.shape)),
        )

    def flip(self, x, /, *, axis=None):
        xp = self.base
        return self._unary(
            x, lambda v: xp.flip(v, axis=axis), lambda g, v, o: xp.flip(g, axis=axis)
        )

    def tril(self, x, /, *, k=0):
        xp = self.base
        return self._unary(x, lambda v: xp.tril(v, k=k), lambda g, v, o: xp.tril(g, k=k))

    def triu(self, x, /, *, k=0):
        xp = self.base
        return self._unary(x, lambda v: xp.triu(v, k=k), lambda g, v, o: xp.triu(g, k=k))

    def concat(self, arrays, /, *, axis=0):
        xp = self.base
        values = _vals(arrays)
        out = xp.concat(values, axis=axis)
        ax = axis % out.ndim
        pairs, start = [], 0
        for a, v in zip(arrays, values, strict=True):
            stop = start + v.shape[ax]
            idx = (*[slice(None)] * ax, slice(start, stop), ...)  # the standard wants the ...
            pairs.append((a, lambda g, idx=idx: g[idx]))
            start = stop
        return self._node(out, pairs)

    def stack(self, arrays, /, *, axis=0):
        xp = self.base
        out = xp.stack(_vals(arrays), axis=axis)
        ax = axis % out.ndim
        pairs = []
        for i, a in enumerate(arrays):
            idx = (*[slice(None)] * ax, i, ...)
            pairs.append((a, lambda g, idx=idx: g[idx]))
        return self._node(out, pairs)

    # ------------------------------------------------------------------ indexing
    def _getitem(self, x: Tensor, key: Any) -> Any:
        xv = x.value
        out = xv[_val(key) if not isinstance(key, tuple) else tuple(_vals(key))]
        return self._node(out, [(x, lambda g: self._scatter(g, tuple(xv.shape), xv.dtype, key))])

    def _scatter(self, g, shape: tuple, dtype, key) -> Any:
        """The gradient of ``x[key]``: ``g`` placed at ``key`` in zeros of ``shape``, by padding."""
        xp = self.base
        key = key if isinstance(key, tuple) else (key,)
        n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (len(shape) - n_real) + key[i + 1 :]
        else:
            key = key + (slice(None),) * (len(shape) - n_real)
        axis = 0  # current axis of g being rebuilt into x's layout
        for k in key:
            if k is None:  # x had no such axis: drop it from g
                g = xp.squeeze(g, axis=axis)
                continue
            size = shape[axis]
            if isinstance(k, int) or (hasattr(k, "__index__") and not isinstance(k, slice)):
                i = int(k) % size
                g = xp.expand_dims(g, axis=axis)
                g = self._pad(g, axis, i, size - i - 1, dtype)
            elif isinstance(k, slice):
                start, stop, step = k.indices(size)
                if step < 0:
                    # same elements as the positive-step slice, in reverse order
                    count = len(range(start, stop, step))
                    g = xp.flip(g, axis=axis)
                    start = start + (count - 1) * step if count else 0
                    step = -step
                count = g.shape[axis]
                if step > 1 and count:
                    zeros = [xp.zeros_like(g)] * (step - 1)
                    g = xp.stack([g, *zeros], axis=axis + 1)
                    new = list(g.shape[: axis + 1]) + list(g.shape[axis + 2 :])
                    new[axis] = count * step
                    g = xp.reshape(g, tuple(new))
                    g = self._take_prefix(g, axis, (count - 1) * step + 1)
                g = self._pad(g, axis, start, size - start - g.shape[axis], dtype)
            else:
                raise KizzasiError(
                    f"autodiff supports integer and slice indexing only, got {type(k).__name__}"
                )
            axis += 1
        return g

    def _take_prefix(self, g, axis, length):
        idx = tuple([slice(None)] * axis + [slice(0, length)])
        return g[idx]

    def _pad(self, g, axis: int, before: int, after: int, dtype) -> Any:
        xp = self.base
        parts = []
        for n in (before, after):
            shape = list(g.shape)
            shape[axis] = n
            parts.append(xp.zeros(tuple(shape), dtype=dtype) if n > 0 else None)
        pieces = [p for p in (parts[0], g, parts[1]) if p is not None]
        return pieces[0] if len(pieces) == 1 else xp.concat(pieces, axis=axis)

    # ------------------------------------------------------------------ FFT
    def _rfft(self, x, /, *, n=None, axis=-1, norm="backward"):
        xp = self.base
        xv = _val(x)
        out = xp.fft.rfft(xv, n=n, axis=axis)
        length = xv.shape[axis] if n is None else n

        def vjp(g):
            # real input: dL/dx_n = Re(sum_k g_k e^{+2 pi i k n / N}); irfft doubles the
            # interior bins, so halve them first
            m = g.shape[axis]
            w = [1.0] + [0.5] * (m - 1)
            if length % 2 == 0:
                w[-1] = 1.0
            shape = [1] * g.ndim
            shape[axis] = m
            wv = xp.reshape(xp.asarray(w, dtype=xv.dtype), tuple(shape))
            r = xp.fft.irfft(g * wv, n=length, axis=axis) * length
            return self._fit_length(r, axis, xv.shape[axis], xv.dtype)

        return self._node(out, [(x, vjp)])

    def _irfft(self, x, /, *, n=None, axis=-1, norm="backward"):
        xp = self.base
        xv = _val(x)
        m = xv.shape[axis]
        length = 2 * (m - 1) if n is None else n
        out = xp.fft.irfft(xv, n=length, axis=axis)

        def vjp(g):
            r = xp.fft.rfft(g, axis=axis) / length  # (..., length//2+1)
            w = [1.0] + [2.0] * (r.shape[axis] - 1)
            if length % 2 == 0:
                w[-1] = 1.0
            shape = [1] * r.ndim
            shape[axis] = r.shape[axis]
            wv = xp.reshape(xp.asarray(w, dtype=g.dtype), tuple(shape))
            return self._fit_length(r * wv, axis, m, None)

        return self._node(out, [(x, vjp)])

    def _fit_length(self, r, axis: int, size: int, dtype) -> Any:
        have = r.shape[axis]
        if have > size:
            return self._take_prefix(r, axis % r.ndim, size)
        if have < size:
            return self._pad(r, axis % r.ndim, 0, size - have, dtype or r.dtype)
        return r
