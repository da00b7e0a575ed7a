"""Seeded random numbers for parameter initialisation, identical on every backend.

The array API standard has no random module, so draws are made on the host (NumPy's PCG64 when
NumPy is importable, Python's ``random`` otherwise) and moved to the target namespace. The same
seed gives the same parameters on numpy, array_api_strict, mlx and cupy.
"""

from __future__ import annotations

import math
from typing import Any


class Generator:
    """``Generator(seed, xp)``: ``normal``, ``uniform`` and ``randint`` arrays in namespace ``xp``."""

    def __init__(self, seed: int | None, xp: Any) -> None:
        self.xp = xp
        try:
            import numpy as np
        except ImportError:  # pure-Python hosts (no numpy): stdlib fallback
            import random

            self._np, self._py = None, random.Random(seed)
        else:
            self._np, self._py = np.random.default_rng(seed), None

    def _to_xp(self, data: Any, dtype: Any) -> Any:
        return self.xp.asarray(data, dtype=dtype)

    def normal(self, shape: tuple[int, ...], *, std: float = 1.0, dtype: Any = None) -> Any:
        """Normal(0, std) draws of ``shape``."""
        if self._np is not None:
            return self._to_xp(self._np.normal(0.0, std, size=shape), dtype)
        n = math.prod(shape)
        return self._to_xp(_nest([self._py.gauss(0.0, std) for _ in range(n)], shape), dtype)

    def uniform(self, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0, *, dtype=None):
        """Uniform[low, high) draws of ``shape``."""
        if self._np is not None:
            return self._to_xp(self._np.uniform(low, high, size=shape), dtype)
        n = math.prod(shape)
        return self._to_xp(_nest([self._py.uniform(low, high) for _ in range(n)], shape), dtype)

    def integers(self, low: int, high: int) -> int:
        """One integer in [low, high)."""
        if self._np is not None:
            return int(self._np.integers(low, high))
        return self._py.randrange(low, high)


def _nest(flat: list, shape: tuple[int, ...]) -> Any:
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0]
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]
