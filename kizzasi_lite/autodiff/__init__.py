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

from kizzasi_lite.autodiff.namespace import AutodiffNamespace
from kizzasi_lite.autodiff.tape import grad, value_and_grad
from kizzasi_lite.autodiff.tensor import Tensor

__all__ = ["AutodiffNamespace", "Tensor", "grad", "value_and_grad"]
