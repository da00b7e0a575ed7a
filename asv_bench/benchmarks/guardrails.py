"""Guardrail projection cost: a box, a polytope and an ellipsoid on 8 channels, 1 and 64 streams.

Every prediction is drawn outside the set, so each call really projects. Uses
``kizzasi_lite.logic.GuardrailSet.enforce`` when the logic package provides it, else the solver
underneath (``kizzasi_lite.logic.projection.project``); a build with neither skips these
benchmarks (asv prints them as n/a).
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
    from kizzasi_lite.logic import GuardrailSet  # ImportError: fall back to the solver
    from kizzasi_lite.logic.constraints import Linear, Quadratic, Range

    if kind == "box":
        constraints = [Range(spec["lo"], spec["hi"])]
    elif kind == "polytope":
        constraints = [
            Linear(tuple(a), float(b)) for a, b in zip(spec["A"], spec["b"], strict=True)
        ]
    else:
        constraints = [Quadratic(tuple(map(tuple, spec["Q"])), None, spec["b"])]
    guards = GuardrailSet(constraints)
    return lambda y: guards.enforce(y)


def _solver(kind: str, spec: dict[str, Any], batch: int) -> Any:
    from kizzasi_lite.logic.projection import Problem, Quad, project

    inf = np.full((batch, CHANNELS), np.inf)
    if kind == "box":
        p = Problem(L=XP.asarray(inf * 0 + spec["lo"]), U=XP.asarray(inf * 0 + spec["hi"]))
    elif kind == "polytope":
        m = spec["A"].shape[0]
        p = Problem(L=XP.asarray(-inf), U=XP.asarray(inf), A=XP.asarray(spec["A"]),
                    l=XP.asarray(np.full((batch, m), -np.inf)),
                    u=XP.asarray(np.broadcast_to(spec["b"], (batch, m)).copy()))  # fmt: skip
    else:
        w, v = np.linalg.eigh(spec["Q"])
        c = np.zeros(CHANNELS)
        quad = Quad(XP.asarray(spec["Q"]), XP.asarray(c), XP.asarray(v), XP.asarray(w),
                    XP.asarray(v.T @ c))  # fmt: skip
        p = Problem(L=XP.asarray(-inf), U=XP.asarray(inf), quads=[quad],
                    qb=XP.asarray(np.full((batch, 1), spec["b"])))  # fmt: skip
    return lambda y: project(y, p)


class GuardrailProjection:
    """Seconds per projection of ``batch`` predictions onto one set (float64, as the solver)."""

    params = (["box", "polytope", "ellipsoid"], [1, 64])
    param_names = ["set", "batch"]
    timeout = 120

    def setup(self, kind: str, batch: int) -> None:
        rng = np.random.default_rng(0)
        spec = _sets(rng)[kind]
        self.y = XP.asarray(3.0 * rng.standard_normal((batch, CHANNELS)))  # mostly outside
        try:
            self.enforce = _guardrail_set(kind, spec)
        except ImportError:
            try:
                self.enforce = _solver(kind, spec, batch)
            except (ImportError, TypeError) as exc:
                raise NotImplementedError(f"no guardrail projection in this build: {exc}") from exc
        self.enforce(self.y)  # fails here, not in the timing, if the API does not fit

    def time_enforce(self, kind: str, batch: int) -> None:
        self.enforce(self.y)
