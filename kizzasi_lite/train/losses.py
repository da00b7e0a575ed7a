"""Losses over predictions and targets of shape (..., C); each returns a scalar (the mean).

All are written with array API functions only, so they differentiate through
:mod:`kizzasi_lite.autodiff`. ``scale`` in :func:`gaussian_nll` is the standard deviation.
"""

from __future__ import annotations

import math
from typing import Any

from kizzasi_lite.backends import namespace


def mse(pred: Any, target: Any) -> Any:
    """Mean squared error."""
    xp = namespace(pred, target)
    d = pred - target
    return xp.mean(d * d)


def mae(pred: Any, target: Any) -> Any:
    """Mean absolute error."""
    xp = namespace(pred, target)
    return xp.mean(xp.abs(pred - target))


def huber(pred: Any, target: Any, delta: float = 1.0) -> Any:
    """Huber loss: quadratic within ``delta`` of the target, linear beyond (smooth L1 * delta)."""
    xp = namespace(pred, target)
    a = xp.abs(pred - target)
    quad = xp.minimum(a, a * 0.0 + delta)  # min(|d|, delta), differentiable in a
    return xp.mean(0.5 * quad * quad + delta * (a - quad))


def gaussian_nll(mean: Any, scale: Any, target: Any) -> Any:
    """Negative log-likelihood of ``target`` under Normal(mean, scale), averaged (nats)."""
    xp = namespace(mean, scale, target)
    z = (target - mean) / scale
    return xp.mean(0.5 * z * z + xp.log(scale)) + 0.5 * math.log(2 * math.pi)


LOSSES = {"mse": mse, "mae": mae, "huber": huber}
