"""NumPy as an array API namespace: ``array_api_compat.numpy`` with a faster ``reshape``.

``array_api_compat.numpy.reshape`` is ``numpy.reshape``, a Python wrapper that costs about 1 us
per call, five times the array method it ends in. A batch-1 step of the default preset reshapes
a few dozen small arrays, so here ``reshape`` calls the method when ``copy`` is None (the
standard's default: a view when the layout allows, else a copy, which is what the method does).
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

    ns.reshape = reshape
    return ns
