"""Reverse-mode gradients as an array namespace that wraps a backend namespace.

The model code is written once against the array API. To train, parameters are wrapped in
:class:`Tensor`; ``namespace(tensor)`` then returns an :class:`AutodiffNamespace`, whose functions
compute on the wrapped backend arrays *and* record how to send gradients back (a tape of
vector-Jacobian products). :func:`value_and_grad` plays the tape in reverse. Inference never sees
a ``Tensor`` and pays nothing.

    loss, grads = value_and_grad(lambda p: loss_fn(p, batch), params)

Differentiable: arithmetic operators, ``@``, basic indexing, and the namespace functions in
``_RULES`` below (elementwise math, reductions, shape functions, ``where``, ``concat``, ``stack``,
``cumulative_sum``, ``matmul``, real FFTs). Calling any other function on a ``Tensor`` raises
``KizzasiError`` naming it, rather than silently dropping the gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kizzasi_lite.autodiff.namespace import AutodiffNamespace
from kizzasi_lite.autodiff.tape import grad, value_and_grad
from kizzasi_lite.autodiff.tensor import Tensor


def plain(x: Any) -> Any:
    """The backend array of ``x`` (a :class:`Tensor`'s value; anything else as it is)."""
    return x.value if isinstance(x, Tensor) else x


def custom(value: Any, pairs: Sequence[tuple[Any, Callable[[Any], Any]]]) -> Any:
    """A differentiable operation computed outside the tape, on plain arrays: ``value`` was
    computed from the inputs of ``pairs``, each with its vector-Jacobian product ``vjp(g)`` (the
    gradient of that input, given the gradient ``g`` of ``value``). Returns a :class:`Tensor`
    recording them when an input is one, else ``value`` itself."""
    ns = next((x.ns for x, _ in pairs if isinstance(x, Tensor)), None)
    return value if ns is None else ns._node(value, pairs)


__all__ = ["AutodiffNamespace", "Tensor", "custom", "grad", "plain", "value_and_grad"]
