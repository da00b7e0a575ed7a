"""NumPy as an array API namespace: ``array_api_compat.numpy`` with cheaper calls where it counts.

A batch-1 step of the default preset makes a few hundred array calls on arrays of a few hundred
numbers, so a wrapper's Python overhead is most of a call's cost. Here the functions such a step
calls most go straight to the array method or ufunc when the arguments allow it, with the
standard's result (tested against the compat functions), and to the compat function otherwise:

- ``reshape`` (compat: ``numpy.reshape``, ~1 us): the method when ``copy`` is None (a view when
  the layout allows, else a copy, as the standard's default);
- ``clip`` (compat checks shapes and integer ranges in Python, ~20 us): ``minimum(maximum(..))``
  for a floating array with bounds that are Python numbers or arrays of its dtype;
- ``sum``, ``max``, ``mean`` (``numpy.sum`` etc., 5-12 us): ``add.reduce`` / ``maximum.reduce``
  (and a division by the count) for float32 and float64;
- ``expand_dims`` (~5 us): indexing with ``None``; ``asarray`` (~2.5 us): a NumPy array that needs
  no conversion is returned as it is (what ``numpy.array(copy=IF_NEEDED)`` returns).

Everything else is the compat module's own function.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

# glibc's malloc maps every block above its threshold (128 KiB at first) afresh, and unmaps it
# when freed; freeing a mapped block raises the threshold to that block's size (up to 32 MiB) and
# the heap's trim threshold to twice that. Mapping and freeing one block of this size when the
# namespace is made lets the arrays of a step of many streams (1-9 MiB each) come from the heap,
# already paged in: at 1024 streams of the default preset a step took ~2600 page faults without
# it and ~2 with it, and its median time fell by 10-20%. Only where the C library is glibc (the
# process may then keep up to twice the block free in its heap).
_MALLOC_PRIMER_BYTES = 31 << 20


def _glibc() -> bool:
    """Whether this process's C library is glibc."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr, or no such name here
        return False


# What names a module rather than serving as its contents: not copied from array_api_compat.numpy
# (its __spec__ would make the namespace print as that module).
_MODULE_IDENTITY = ("__name__", "__doc__", "__spec__", "__loader__", "__file__", "__path__",
                    "__package__", "__cached__")  # fmt: skip


def numpy_namespace(compat: ModuleType) -> ModuleType:
    """A module with every public name of ``compat`` (``array_api_compat.numpy``), with the
    functions above replaced."""
    import numpy as np  # this namespace exists only where numpy does

    if _glibc():  # elsewhere (Pyodide's wasm heap, say) the block would stay claimed
        np.empty(_MALLOC_PRIMER_BYTES, dtype=np.uint8)  # mapped and freed, never written (above)

    ns = ModuleType("kizzasi_lite.backends.numpy", compat.__doc__)
    ns.__dict__.update({k: v for k, v in vars(compat).items() if k not in _MODULE_IDENTITY})

    def floating(x: Any) -> bool:
        """A non-empty float32 or float64 NumPy array."""
        return type(x) is np.ndarray and x.dtype in (np.float32, np.float64) and x.size > 0

    def reshape(x: Any, /, shape: tuple[int, ...], *, copy: bool | None = None) -> Any:
        """The array API ``reshape``; ``copy=None`` is ``x.reshape(shape)``."""
        if copy is None and hasattr(x, "reshape"):
            return x.reshape(shape)
        return compat.reshape(x, shape, copy=copy)

    def fits(bound: Any, dtype: Any) -> bool:
        """Whether ``bound`` clips a ``dtype`` array through the ufuncs with no promotion."""
        if bound is None or type(bound) in (int, float):
            return True
        return type(bound) is np.ndarray and bound.dtype == dtype

    def clip(x: Any, /, min: Any = None, max: Any = None) -> Any:
        """The array API ``clip``; ufuncs for a floating array and bounds of its kind."""
        bounded = min is not None or max is not None
        if not (bounded and floating(x) and x.ndim and fits(min, x.dtype) and fits(max, x.dtype)):
            return compat.clip(x, min, max)
        y = x if min is None else np.maximum(x, min)
        return y if max is None else np.minimum(y, max)

    def sum(x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:
        """The array API ``sum``; ``add.reduce`` for a floating array in its own dtype."""
        if dtype is None and floating(x):
            return np.add.reduce(x, axis=axis, keepdims=keepdims)
        return compat.sum(x, axis=axis, dtype=dtype, keepdims=keepdims)

    def max(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        """The array API ``max``; ``maximum.reduce`` for a floating array."""
        if floating(x):
            return np.maximum.reduce(x, axis=axis, keepdims=keepdims)
        return compat.max(x, axis=axis, keepdims=keepdims)

    def mean(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        """The array API ``mean``; the sum over the count for a floating array."""
        if not floating(x):
            return compat.mean(x, axis=axis, keepdims=keepdims)
        total = np.add.reduce(x, axis=axis, keepdims=keepdims)
        return total / (x.size // np.size(total))

    def expand_dims(x: Any, /, *, axis: int = 0) -> Any:
        """The array API ``expand_dims``; ``x[..., None, ...]`` for a NumPy array."""
        if type(x) is np.ndarray and type(axis) is int and -x.ndim - 1 <= axis <= x.ndim:
            return x[(slice(None),) * (axis if axis >= 0 else axis + x.ndim + 1) + (None,)]
        return compat.expand_dims(x, axis=axis)

    def asarray(
        obj: Any, /, *, dtype: Any = None, device: Any = None, copy: Any = None, **kwargs: Any
    ) -> Any:
        """The array API ``asarray``; a NumPy array of the asked dtype, not copied, as is."""
        if type(obj) is np.ndarray and copy is None and device is None and not kwargs:
            if dtype is None or obj.dtype == dtype:
                return obj
        return compat.asarray(obj, dtype=dtype, device=device, copy=copy, **kwargs)

    for f in (reshape, clip, sum, max, mean, expand_dims, asarray):
        setattr(ns, f.__name__, f)
    return ns
