"""MLX as an array API namespace: ``mlx.core`` plus the few standard functions it spells differently.

MLX arrays have no ``device`` attribute and MLX has no ``cumulative_sum(include_initial=...)``,
no ``linalg.vector_norm``, no ``bool`` dtype name and no ``device=`` keywords; those gaps are filled
here so that core code written against the standard runs unchanged.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class MLXNamespace:
    """Delegates to ``mlx.core``; overrides only where MLX departs from the array API standard."""

    backend_name = "mlx"
    __name__ = "kizzasi_lite.backends.mlx"

    def __init__(self, mx: Any) -> None:
        self._mx = mx
        self.bool = mx.bool_
        self.linalg = SimpleNamespace(
            vector_norm=self._vector_norm,
            matmul=mx.matmul,
            matrix_transpose=self.matrix_transpose,
            **{k: getattr(mx.linalg, k) for k in dir(mx.linalg) if not k.startswith("_")},
        )
        self.fft = mx.fft

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mx, name)

    def __repr__(self) -> str:
        return "<array namespace: mlx>"

    # creation: drop the standard's device= keyword (MLX arrays live in unified memory)
    def asarray(self, obj: Any, /, *, dtype: Any = None, device: Any = None, copy: Any = None):
        mx = self._mx
        if isinstance(obj, mx.array):
            return obj if dtype is None or obj.dtype == dtype else obj.astype(dtype)
        if dtype is None and getattr(obj, "dtype", None) is not None:
            dtype = getattr(mx, str(obj.dtype), None)  # keep float64 data float64 (MLX casts to 32)
        return mx.array(obj, dtype=dtype) if dtype is not None else mx.array(obj)

    def zeros(self, shape: Any, *, dtype: Any = None, device: Any = None):
        return self._mx.zeros(shape, dtype=dtype or self._mx.float32)

    def ones(self, shape: Any, *, dtype: Any = None, device: Any = None):
        return self._mx.ones(shape, dtype=dtype or self._mx.float32)

    def full(self, shape: Any, fill_value: Any, *, dtype: Any = None, device: Any = None):
        return self._mx.full(shape, fill_value, dtype=dtype)

    def zeros_like(self, x: Any, /, *, dtype: Any = None, device: Any = None):
        return self._mx.zeros(x.shape, dtype=dtype or x.dtype)

    def ones_like(self, x: Any, /, *, dtype: Any = None, device: Any = None):
        return self._mx.ones(x.shape, dtype=dtype or x.dtype)

    def eye(
        self, n_rows: int, n_cols: int | None = None, /, *, k: int = 0, dtype=None, device=None
    ):
        return self._mx.eye(n_rows, n_cols, k, dtype=dtype or self._mx.float32)

    def arange(self, start, /, stop=None, step=1, *, dtype=None, device=None):
        if stop is None:
            start, stop = 0, start
        return self._mx.arange(start, stop, step, dtype=dtype)

    def astype(self, x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None):
        return x.astype(dtype)

    # functions whose keywords differ from the standard
    def clip(self, x: Any, /, min: Any = None, max: Any = None):
        return self._mx.clip(x, min, max)

    def cumulative_sum(self, x, /, *, axis=None, dtype=None, include_initial=False):
        mx = self._mx
        if axis is None:
            if x.ndim != 1:
                raise ValueError("cumulative_sum needs axis= for arrays of more than one dimension")
            axis = 0
        out = mx.cumsum(x, axis=axis) if dtype is None else mx.cumsum(x.astype(dtype), axis=axis)
        if include_initial:
            shape = list(out.shape)
            shape[axis] = 1
            out = mx.concatenate([mx.zeros(shape, dtype=out.dtype), out], axis=axis)
        return out

    def cumulative_prod(self, x, /, *, axis=None, dtype=None, include_initial=False):
        mx = self._mx
        axis = 0 if axis is None else axis
        out = mx.cumprod(x, axis=axis) if dtype is None else mx.cumprod(x.astype(dtype), axis=axis)
        if include_initial:
            shape = list(out.shape)
            shape[axis] = 1
            out = mx.concatenate([mx.ones(shape, dtype=out.dtype), out], axis=axis)
        return out

    def matrix_transpose(self, x: Any, /):
        return self._mx.swapaxes(x, -1, -2)

    # MLX (0.32, CPU) evaluates exp, sin and cos of float64 arrays in float32 precision; its
    # float64 cosh, sinh and tan are exact, so float64 is rebuilt from those (no cancellation).
    def exp(self, x: Any, /):
        mx = self._mx
        if x.dtype != mx.float64:
            return mx.exp(x)
        c, s = mx.cosh(x), mx.sinh(x)
        return mx.where(x >= 0, c + s, 1.0 / (c - s))

    def logaddexp(self, x1: Any, x2: Any, /):
        mx = self._mx  # float64 logaddexp is float32-precise too; log1p and maximum are exact
        if not any(isinstance(v, mx.array) and v.dtype == mx.float64 for v in (x1, x2)):
            return mx.logaddexp(x1, x2)
        return mx.maximum(x1, x2) + mx.log1p(self.exp(-mx.abs(x1 - x2)))

    def _sin_cos(self, x: Any) -> tuple[Any, Any]:
        mx = self._mx  # half-angle formulas in u = tan(x/2), or u = 1/tan(x/2) where |tan| > 1
        t = mx.tan(0.5 * x)
        big = mx.abs(t) > 1.0
        u = mx.where(big, 1.0 / mx.where(big, t, 1.0), t)
        d = 1.0 + u * u
        return 2.0 * u / d, mx.where(big, -1.0, 1.0) * (1.0 - u * u) / d

    def sin(self, x: Any, /):
        return self._sin_cos(x)[0] if x.dtype == self._mx.float64 else self._mx.sin(x)

    def cos(self, x: Any, /):
        return self._sin_cos(x)[1] if x.dtype == self._mx.float64 else self._mx.cos(x)

    def _vector_norm(self, x, /, *, axis=None, keepdims=False, ord=2):
        mx = self._mx
        a = mx.abs(x)
        if ord == float("inf"):
            return mx.max(a, axis=axis, keepdims=keepdims)
        if ord == 1:
            return mx.sum(a, axis=axis, keepdims=keepdims)
        return mx.sum(a**ord, axis=axis, keepdims=keepdims) ** (1.0 / ord)

    def isdtype(self, dtype: Any, kind: Any) -> bool:
        mx = self._mx
        kinds = kind if isinstance(kind, tuple) else (kind,)
        groups = {
            "real floating": (mx.float16, mx.bfloat16, mx.float32, mx.float64),
            "complex floating": (mx.complex64,),
            "bool": (mx.bool_,),
            "signed integer": (mx.int8, mx.int16, mx.int32, mx.int64),
            "unsigned integer": (mx.uint8, mx.uint16, mx.uint32, mx.uint64),
        }
        groups["integral"] = groups["signed integer"] + groups["unsigned integer"]
        groups["numeric"] = (
            groups["integral"] + groups["real floating"] + groups["complex floating"]
        )
        return any(dtype == k if not isinstance(k, str) else dtype in groups[k] for k in kinds)
