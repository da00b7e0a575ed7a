"""``Tensor``: a backend array that remembers how it was computed (see :mod:`.tape`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kizzasi_lite.errors import KizzasiError

if TYPE_CHECKING:
    from kizzasi_lite.autodiff.namespace import AutodiffNamespace


class Tensor:
    """A backend array that records how it was computed, for reverse-mode gradients."""

    __slots__ = ("value", "ns", "parents", "vjps")
    __array_ufunc__ = None  # numpy operators defer to ours; numpy functions refuse tensors
    __kizzasi_tensor__ = True  # lets backends.namespace() find us among plain arrays

    def __init__(self, value: Any, ns: AutodiffNamespace, parents=(), vjps=()) -> None:
        self.value = value
        self.ns = ns
        self.parents = parents
        self.vjps = vjps

    def __array_namespace__(self, api_version: str | None = None) -> AutodiffNamespace:
        return self.ns

    # array attributes
    shape = property(lambda self: tuple(self.value.shape))
    dtype = property(lambda self: self.value.dtype)
    ndim = property(lambda self: self.value.ndim)
    size = property(lambda self: self.value.size)
    device = property(lambda self: getattr(self.value, "device", None))
    mT = property(lambda self: self.ns.matrix_transpose(self))

    @property
    def T(self) -> Tensor:
        return self.ns.permute_dims(self, tuple(reversed(range(self.ndim))))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"Tensor({self.value!r})"

    def __array__(self, *args, **kwargs):
        raise KizzasiError(
            "an autodiff Tensor reached a plain NumPy function; get the namespace from the "
            "tensor (xp = namespace(tensor, ...)) so that its gradient is recorded"
        )

    def __float__(self) -> float:
        return float(self.value)

    def __bool__(self) -> bool:
        return bool(self.value)

    # operators
    def __add__(self, o):
        return self.ns.add(self, o)

    def __radd__(self, o):
        return self.ns.add(o, self)

    def __sub__(self, o):
        return self.ns.subtract(self, o)

    def __rsub__(self, o):
        return self.ns.subtract(o, self)

    def __mul__(self, o):
        return self.ns.multiply(self, o)

    def __rmul__(self, o):
        return self.ns.multiply(o, self)

    def __truediv__(self, o):
        return self.ns.divide(self, o)

    def __rtruediv__(self, o):
        return self.ns.divide(o, self)

    def __pow__(self, o):
        return self.ns.pow(self, o)

    def __rpow__(self, o):
        return self.ns.pow(o, self)

    def __matmul__(self, o):
        return self.ns.matmul(self, o)

    def __rmatmul__(self, o):
        return self.ns.matmul(o, self)

    def __neg__(self):
        return self.ns.negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return self.ns.abs(self)

    def __getitem__(self, key):
        return self.ns._getitem(self, key)

    # comparisons are not differentiable: they return plain boolean arrays
    def __lt__(self, o):
        return self.value < _val(o)

    def __le__(self, o):
        return self.value <= _val(o)

    def __gt__(self, o):
        return self.value > _val(o)

    def __ge__(self, o):
        return self.value >= _val(o)

    def __eq__(self, o):  # type: ignore[override]
        return self.value == _val(o)

    def __ne__(self, o):  # type: ignore[override]
        return self.value != _val(o)

    __hash__ = object.__hash__


def _val(x: Any) -> Any:
    return x.value if isinstance(x, Tensor) else x


def _vals(xs: Sequence[Any]) -> list[Any]:
    return [_val(x) for x in xs]


def _has_tensor(obj: Any) -> bool:
    if isinstance(obj, Tensor):
        return True
    if isinstance(obj, list | tuple):
        return any(_has_tensor(o) for o in obj)
    return False
