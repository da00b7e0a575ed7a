"""Weight initialisers as torch's ``nn.init`` draws them, from a backend random generator.

``rng`` is a :class:`kizzasi_lite.backends.random.Generator`; its ``xp`` is the namespace.
"""

from __future__ import annotations

import math
from typing import Any


def kaiming_uniform(rng: Any, shape: tuple[int, ...], fan_in: int, dtype: Any) -> Any:
    """torch's ``kaiming_uniform_(a=sqrt(5))``: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(shape, -bound, bound, dtype=dtype)


def orthogonal(rng: Any, rows: int, cols: int, gain: float, dtype: Any) -> Any:
    """torch's ``orthogonal_(gain)`` of a (rows, cols) matrix; scaled normal where QR is missing."""
    xp = rng.xp
    if gain == 0.0:
        return xp.zeros((rows, cols), dtype=dtype)
    n, m = max(rows, cols), min(rows, cols)
    a = rng.normal((n, m), dtype=dtype)  # (n, m)
    try:
        q, r = xp.linalg.qr(a)  # (n, m), (m, m)
    except Exception:  # a backend without linalg.qr (or without it on this device)
        return rng.normal((rows, cols), std=gain / math.sqrt(cols), dtype=dtype)
    d = xp.sum(r * xp.eye(m, dtype=dtype), axis=0)  # (m,) the diagonal of r
    q = q * xp.where(d < 0, -xp.ones_like(d), xp.ones_like(d))  # (n, m)
    q = q if rows >= cols else xp.matrix_transpose(q)  # (rows, cols)
    return gain * q


__all__ = ["kaiming_uniform", "orthogonal"]
