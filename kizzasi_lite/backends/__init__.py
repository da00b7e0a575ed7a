"""Array namespaces: find the namespace of arrays, or get one by backend name.

Every core function finds its namespace with :func:`namespace` (``xp = namespace(x)``) and then
calls only functions of the Python array API standard on ``xp``. What a backend lacks is filled in
here and nowhere else (see :mod:`kizzasi_lite.backends._mlx`; :mod:`kizzasi_lite.backends._numpy`
replaces one slow wrapper).

Backends by name: ``"numpy"`` (default), ``"array_api_strict"`` (the standard and nothing more, the
proof that the core is portable), ``"mlx"`` (Apple's MLX; also runs on Linux CPU) and ``"cupy"``
(CUDA GPUs).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

import array_api_compat

from kizzasi_lite.errors import BackendUnavailableError, InputError

BACKENDS = ("numpy", "array_api_strict", "mlx", "cupy")
DEFAULT_BACKEND = "numpy"


# array type -> its namespace, filled by namespace() (the lookup costs microseconds, and a step
# of a small model makes hundreds of them)
_NAMESPACE_OF_TYPE: dict[type, Any] = {}
_SCALARS = (int, float, complex, bool, type(None))


def namespace(*arrays: Any) -> Any:
    """Return the array API namespace shared by ``arrays`` (Python scalars and None are ignored)."""
    xp = None
    for a in arrays:  # the fast path: arrays of types seen before, all of one namespace
        t = type(a)
        if t in _SCALARS:
            continue
        found = _NAMESPACE_OF_TYPE.get(t)
        if found is None or (xp is not None and found is not xp):
            return _namespace_slow(arrays)  # autodiff tensors (never cached) go this way too
        xp = found
    return xp if xp is not None else _namespace_slow(arrays)


def _namespace_slow(arrays: tuple[Any, ...]) -> Any:
    """:func:`namespace` through ``array_api_compat``; remembers the namespace of each type."""
    arrays = tuple(a for a in arrays if not isinstance(a, _SCALARS))
    for a in arrays:  # autodiff tensors win over the plain arrays they are mixed with
        if getattr(type(a), "__kizzasi_tensor__", False):
            return a.ns
    xp = array_api_compat.array_namespace(*arrays)
    if getattr(xp, "__name__", "") in ("mlx.core", "array_api_compat.numpy"):
        xp = get_namespace("mlx" if xp.__name__ == "mlx.core" else "numpy")
    if len({type(a) for a in arrays}) == 1:
        _NAMESPACE_OF_TYPE[type(arrays[0])] = xp
    return xp


def loops_are_cheap(*arrays: Any) -> bool:
    """Whether a Python loop over time steps suits ``arrays``: plain arrays of a NumPy-backed
    namespace (numpy, array_api_strict), evaluated eagerly on the CPU.

    Models use it to pick Python loops over steps or chunks (blocked recurrences, the carry
    across SSD chunks), tested equal to the general path. It is False for autodiff tensors
    (gradients go through the chunked form) and for the device backends (cupy, mlx), where each
    small operation is a kernel launch or a graph node.
    """
    if any(getattr(type(a), "__kizzasi_tensor__", False) for a in arrays):
        return False
    return backend_name(namespace(*arrays)) in ("numpy", "array_api_strict")


@cache
def get_namespace(name: str | None = None) -> Any:
    """Return the namespace of backend ``name`` (one of :data:`BACKENDS`; None means numpy).

    Raises ``BackendUnavailableError`` when the backend's package is not installed.
    """
    name = name or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise BackendUnavailableError(f"backend must be one of {BACKENDS}, got {name!r}")
    try:
        if name == "numpy":
            from kizzasi_lite.backends._numpy import numpy_namespace

            return numpy_namespace(importlib.import_module("array_api_compat.numpy"))
        if name == "array_api_strict":
            return importlib.import_module("array_api_strict")
        if name == "mlx":
            from kizzasi_lite.backends._mlx import MLXNamespace

            return MLXNamespace(importlib.import_module("mlx.core"))
        cupy = importlib.import_module("cupy")
        cupy.cuda.runtime.getDeviceCount()  # raises when there is no GPU or driver
        return importlib.import_module("array_api_compat.cupy")
    except BackendUnavailableError:
        raise
    except Exception as exc:  # ImportError, or CUDA runtime errors for cupy
        hint = {
            "mlx": "pip install 'kizzasi-lite[mlx]'",
            "cupy": "pip install 'kizzasi-lite[cupy]'",
        }
        raise BackendUnavailableError(
            f"backend {name!r} is not available here ({type(exc).__name__}: {exc}); "
            f"{hint.get(name, f'pip install {name}')}"
        ) from exc


def backend_name(xp: Any) -> str:
    """The backend name of namespace ``xp`` (inverse of :func:`get_namespace`)."""
    if getattr(xp, "backend_name", None):
        return xp.backend_name
    mod = getattr(xp, "__name__", "")
    for name in BACKENDS:
        if name in mod:
            return name
    return mod


def available_backends() -> list[str]:
    """The backends that can be used on this machine."""
    out = []
    for name in BACKENDS:
        try:
            get_namespace(name)
        except BackendUnavailableError:
            continue
        out.append(name)
    return out


def dtype_of(xp: Any, name: str) -> Any:
    """The dtype object named ``"float32"`` or ``"float64"`` in namespace ``xp``."""
    if name not in ("float32", "float64"):
        raise InputError(f"dtype must be 'float32' or 'float64', got {name!r}")
    return getattr(xp, name)


def dtype_name(dtype: Any) -> str:
    """``"float32"`` / ``"float64"`` / ... for a dtype of any backend."""
    text = str(dtype)
    for name in ("float16", "bfloat16", "float32", "float64", "complex64", "complex128"):
        if name in text:
            return name
    return text.rsplit(".", 1)[-1].strip("'>")


def to_numpy(x: Any):
    """Copy an array of any backend to a NumPy array (host memory)."""
    import numpy as np

    if isinstance(x, np.ndarray):
        return x
    mod = type(x).__module__
    if mod.startswith("cupy"):
        return x.get()
    if mod.startswith("array_api_strict"):
        return np.from_dlpack(x)
    return np.asarray(x)


def from_numpy(a: Any, xp: Any, dtype: Any = None) -> Any:
    """Put NumPy (or nested-list) data ``a`` into namespace ``xp``, optionally casting to ``dtype``."""
    return xp.asarray(a, dtype=dtype) if dtype is not None else xp.asarray(a)


__all__ = [
    "BACKENDS",
    "available_backends",
    "backend_name",
    "dtype_name",
    "dtype_of",
    "from_numpy",
    "get_namespace",
    "namespace",
    "loops_are_cheap",
    "to_numpy",
]
