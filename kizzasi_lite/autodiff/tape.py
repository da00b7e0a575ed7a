"""The tape played in reverse: :func:`value_and_grad` and :func:`grad`.

Each differentiable operation returns a ``Tensor`` holding its value (a backend array), its
``Tensor`` inputs, and one vector-Jacobian product per input. Backward walks the graph once in
reverse topological order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kizzasi_lite.autodiff.namespace import AutodiffNamespace
from kizzasi_lite.autodiff.tensor import Tensor
from kizzasi_lite.errors import KizzasiError

_NAMESPACES: dict[int, AutodiffNamespace] = {}


def namespace_for(base: Any) -> AutodiffNamespace:
    """The (cached) autodiff namespace over backend namespace ``base``."""
    ns = _NAMESPACES.get(id(base))
    if ns is None:
        ns = _NAMESPACES[id(base)] = AutodiffNamespace(base)
    return ns


def _backward(out: Tensor, seed: Any) -> dict[int, Any]:
    order, seen, stack = [], set(), [(out, False)]
    while stack:  # iterative post-order DFS: parents before children
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in node.parents or () if id(p) not in seen)
    grads: dict[int, Any] = {id(out): seed}
    for node in reversed(order):
        g = grads.get(id(node))
        if g is None or not node.parents:
            continue
        for parent, vjp in zip(node.parents, node.vjps, strict=True):
            gp = vjp(g)
            key = id(parent)
            grads[key] = gp if key not in grads else grads[key] + gp
        del grads[id(node)]
    return grads


def value_and_grad(
    fn: Callable[..., Any], params: dict[str, Any], *args: Any, has_aux: bool = False, **kwargs
) -> tuple[Any, dict[str, Any]]:
    """Evaluate ``fn(params, *args, **kwargs)`` (a scalar) and its gradient w.r.t. ``params``.

    ``params``: a dict of backend arrays. The backend arrays among ``args`` and ``kwargs`` (also
    inside dicts, lists and tuples: inputs, targets, states, frozen parameters) reach ``fn`` as
    constant tensors (:meth:`AutodiffNamespace.constant`), so that every operator meets a tensor
    on its left; data captured by ``fn`` itself does not, and works on NumPy alone. Returns
    ``(value, grads)`` with ``grads`` holding one array per key, of the same shape, namespace and
    dtype (zeros where the value does not depend on that parameter). With ``has_aux=True``,
    ``fn`` returns ``(scalar, aux)`` and the result is ``((value, aux), grads)``.
    """
    from kizzasi_lite.backends import namespace

    if not params:
        raise KizzasiError("value_and_grad needs at least one parameter")
    base = namespace(*params.values())
    ns = namespace_for(base)
    wrapped = {k: Tensor(v, ns) for k, v in params.items()}
    result = fn(wrapped, *_lift(ns, args), **_lift(ns, kwargs))
    loss, aux = result if has_aux else (result, None)
    if not isinstance(loss, Tensor) or loss.parents is None:  # not computed from the parameters
        value = loss.value if isinstance(loss, Tensor) else loss
        grads = {k: base.zeros_like(v) for k, v in params.items()}
    else:
        if loss.ndim != 0:
            raise KizzasiError(f"value_and_grad needs a scalar value, got shape {loss.shape}")
        value = loss.value
        g = _backward(loss, base.ones_like(loss.value))
        grads = {k: g.get(id(t), base.zeros_like(params[k])) for k, t in wrapped.items()}
    return ((value, aux), grads) if has_aux else (value, grads)


def _lift(ns: AutodiffNamespace, obj: Any) -> Any:
    """``obj`` with each floating-point backend array in it (through dicts, lists and tuples) a
    constant tensor; integer arrays (positions, indices) stay plain."""
    if isinstance(obj, dict):
        return {k: _lift(ns, v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_lift(ns, v) for v in obj)
    if isinstance(obj, Tensor | int | float) or not hasattr(obj, "dtype"):
        return obj
    return ns.constant(obj) if ns.base.isdtype(obj.dtype, "real floating") else obj


def grad(fn: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """``grad(fn)(params, ...)``: the gradient of scalar ``fn`` w.r.t. the dict ``params``."""
    return lambda params, *a, **k: value_and_grad(fn, params, *a, **k)[1]
