"""NumPy as an array API namespace: ``array_api_compat.numpy`` with faster ``reshape`` and ``clip``.

``array_api_compat.numpy.reshape`` is ``numpy.reshape``, a Python wrapper that costs about 1 us
per call, five times the array method it ends in. A batch-1 step of the default preset reshapes
a few dozen small arrays, so here ``reshape`` calls the method when ``copy`` is None (the
standard's default: a view when the layout allows, else a copy, which is what the method does).
``array_api_compat.numpy.clip`` checks shapes and integer ranges in Python (about 20 us a call,
against 3 us for the ufuncs); for a floating array with bounds that are Python numbers or arrays
of its dtype, ``clip`` here is ``minimum(maximum(x, min), max)``, the same result.
Everything else is the compat module's own function.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def numpy_namespace(compat: ModuleType) -> ModuleType:
    """A module with every public name of ``compat`` (``array_api_compat.numpy``), and
    :func:`reshape` replaced."""
    ns = ModuleType("kizzasi_lite.backends.numpy", compat.__doc__)
    ns.__dict__.update({k: v for k, v in vars(compat).items() if k not in ("__name__", "__doc__")})
    base = compat.reshape

    def reshape(x: Any, /, shape: tuple[int, ...], *, copy: bool | None = None) -> Any:
        """The array API ``reshape``; ``copy=None`` is ``x.reshape(shape)``."""
        if copy is None and hasattr(x, "reshape"):
            return x.reshape(shape)
        return base(x, shape, copy=copy)

    import numpy as np  # this namespace exists only where numpy does

    base_clip = compat.clip

    def fits(bound: Any, dtype: Any) -> bool:
        """Whether ``bound`` clips a ``dtype`` array through the ufuncs with no promotion."""
        if bound is None or type(bound) in (int, float):
            return True
        return isinstance(bound, np.ndarray) and bound.dtype == dtype

    def clip(x: Any, /, min: Any = None, max: Any = None) -> Any:
        """The array API ``clip``; ufuncs for a floating array and bounds of its kind."""
        if not (isinstance(x, np.ndarray) and x.ndim and x.dtype.kind == "f"):
            return base_clip(x, min, max)
        if not (fits(min, x.dtype) and fits(max, x.dtype)) or (min is None and max is None):
            return base_clip(x, min, max)
        y = x if min is None else np.maximum(x, min)
        return y if max is None else np.minimum(y, max)

    ns.reshape, ns.clip = reshape, clip
    return ns
