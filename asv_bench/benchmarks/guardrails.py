"""Guardrail projection cost: a box, a polytope and an ellipsoid on 8 channels, 1 and 64 streams.

Every prediction is drawn outside the set, so each call really projects, through
``kizzasi_lite.logic.GuardrailSet.enforce`` (float64 predictions: no rounding to check).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import XP

CHANNELS = 8


def _sets(rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """The three sets as plain data: box bounds, polytope rows, ellipsoid matrix."""
    rows = rng.standard_normal((2 * CHANNELS, CHANNELS))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)  # |a_k| = 1: a ball of radius ~1 inside
    m = rng.standard_normal((CHANNELS, CHANNELS))
    q = m @ m.T / CHANNELS + np.eye(CHANNELS)  # positive definite
    return {
        "box": {"lo": -1.0, "hi": 1.0},
        "polytope": {"A": rows, "b": np.ones(2 * CHANNELS)},
        "ellipsoid": {"Q": q, "b": 1.0},
    }


def _guardrail_set(kind: str, spec: dict[str, Any]) -> Any:
    from kizzasi_lite.logic import GuardrailSet, Linear, Quadratic, Range

    if kind == "box":
        constraints = [Range(spec["lo"], spec["hi"])]
    elif kind == "polytope":
        constraints = [
            Linear(tuple(a), float(b)) for a, b in zip(spec["A"], spec["b"], strict=True)
        ]
    else:
        constraints = [Quadratic(tuple(map(tuple, spec["Q"])), None, spec["b"])]
    return GuardrailSet().add(constraints)


class GuardrailProjection:
    """Seconds per projection of ``batch`` predictions onto one set (float64, as the solver)."""

    params = (["box", "polytope", "ellipsoid"], [1, 64])
    param_names = ["set", "batch"]
    timeout = 120

    def setup(self, kind: str, batch: int) -> None:
        rng = np.random.default_rng(0)
        spec = _sets(rng)[kind]
        self.y = XP.asarray(3.0 * rng.standard_normal((batch, CHANNELS)))  # mostly outside
        self.guards = _guardrail_set(kind, spec)

    def time_enforce(self, kind: str, batch: int) -> None:
        self.guards.enforce(self.y)
