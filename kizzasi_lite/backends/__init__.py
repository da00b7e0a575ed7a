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

import _thread  # a lock, no threads: the core runs in a browser too
import contextlib
import importlib
import math
import sys
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
    """``"float32"`` / ``"float64"`` / ... for a dtype of any backend (remembered per dtype:
    NumPy's ``str(dtype)`` takes ~10 us, and the guardrails ask several times a call)."""
    key = (type(dtype), dtype)  # the type first: backends' dtypes may not compare with others'
    with contextlib.suppress(KeyError, TypeError):  # not seen yet, or not hashable
        return _DTYPE_NAMES[key]
    text = str(dtype)
    names = ("bfloat16", "float16", "float32", "float64", "complex64", "complex128")
    name = next((n for n in names if n in text), text.rsplit(".", 1)[-1].strip("'>"))
    with contextlib.suppress(TypeError):
        _DTYPE_NAMES[key] = name
    return name


_DTYPE_NAMES: dict[Any, str] = {}


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


# Arrays of at least this many bytes that a step allocates on NumPy come from spares (see
# :func:`spare_empty`); smaller ones come back from malloc's heap and rarely fault.
_SPARE_MIN_BYTES = 4 << 20
_spares: dict[tuple, list] = {}  # (shape, dtype) -> the arrays spare_empty gave
_spares_lock = _thread.allocate_lock()  # two threads never take one spare


def _refs(arrays: list, j: int) -> int:
    """The reference count of ``arrays[j]``, as seen from here."""
    return sys.getrefcount(arrays[j])


_UNREFERENCED = _refs([object()], 0)  # what _refs gives for an item nothing else refers to


def spare_empty(xp: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """``xp.empty(shape, dtype)`` for a step's large outputs (the new state of many streams).

    On NumPy, an array of at least ``_SPARE_MIN_BYTES`` comes from the arrays this function gave
    before, once nothing else refers to one: no state holds it or a view of it (a NumPy view
    refers to the array that owns its memory). Freshly mapped memory costs a page fault per page
    on its first write; for the 32 MiB new state of a layer of 1024 streams of the default preset
    that cost more than the pass that writes it. The spares of a shape never outnumber its arrays
    in use (so they hold at most as much memory as the states alive), and allocating a new array
    drops the spares of other shapes.
    """
    if backend_name(xp) != "numpy":
        return xp.empty(shape, dtype=dtype)
    import numpy as np  # a NumPy namespace exists only where numpy does

    if math.prod(shape) * np.dtype(dtype).itemsize < _SPARE_MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    key = (tuple(shape), np.dtype(dtype))
    with _spares_lock:
        arrays = _spares.setdefault(key, [])
        free = [j for j in range(len(arrays)) if _refs(arrays, j) == _UNREFERENCED]
        if free:
            out = arrays[free.pop(0)]
        else:
            out = np.empty(shape, dtype=dtype)
            arrays.append(out)
            for other in [k for k in _spares if k != key]:  # a new shape: others may be stale
                kept = _spares[other]
                kept[:] = [kept[j] for j in range(len(kept)) if _refs(kept, j) != _UNREFERENCED]
                if not kept:
                    del _spares[other]
        extra = max(0, 2 * len(free) - len(arrays))  # spares beyond the arrays in use
        for j in reversed(free[len(free) - extra :]):
            del arrays[j]
    return out


def plain_numpy(*arrays: Any) -> bool:
    """Whether ``arrays`` are all plain NumPy arrays (not array_api_strict's, not autodiff
    tensors): what NumPy-only calls (``einsum``, strided views, ``order=``) may take."""
    for a in arrays:  # a loop, not all() over a generator: it runs in a step's hot path
        if type(a).__module__ != "numpy":
            return False
    return True


def sliding_windows(x: Any, k: int) -> Any:
    """For a plain NumPy array ``x`` (..., T, C): its windows of ``k`` steps as a read-only
    view (..., T - k + 1, k, C), with no copy, each window's rows those of ``x`` (contiguous
    along C); None for any other array (the array API has no strided views), so the caller
    takes its general path."""
    if not plain_numpy(x):
        return None
    if x.shape[-2] == k:  # one window, x itself (as_strided costs ~8 us a call)
        window = x[..., None, :, :]
        window.flags.writeable = False
        return window
    import numpy as np

    *lead, t, c = x.shape
    step, across = x.strides[-2], x.strides[-1]
    shape, strides = (*lead, t - k + 1, k, c), (*x.strides[:-2], step, step, across)
    return np.lib.stride_tricks.as_strided(x, shape, strides, writeable=False)


def overflow_quiet(xp: Any) -> Any:
    """A context in which NumPy computes overflows and invalid values without warnings (for ops
    whose inf or nan is the intended result): NumPy's ``errstate`` for the NumPy-backed
    namespaces (numpy, array_api_strict), a no-op context for the others."""
    errstate = _errstate(xp)
    return (
        contextlib.nullcontext() if errstate is None else errstate(over="ignore", invalid="ignore")
    )


@cache
def _errstate(xp: Any) -> Any:
    """NumPy's ``errstate`` for a NumPy-backed namespace, else None (looked up once per
    namespace: a step calls :func:`overflow_quiet` for every activation)."""
    if backend_name(xp) not in ("numpy", "array_api_strict"):
        return None
    import numpy as np

    return np.errstate


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
    "overflow_quiet",
    "plain_numpy",
    "sliding_windows",
    "spare_empty",
    "to_numpy",
]
