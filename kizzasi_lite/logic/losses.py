"""Constraints as training losses: penalties on the differentiable violation of each constraint.

Every constraint's ``violation(y, previous)`` is a hinge (or squared hinge) written with array
API functions, so it is differentiable through :mod:`kizzasi_lite.autodiff`. Two ways to use
them while training a predictor, so that it violates the constraints less often *before* the
projection has to step in:

- :class:`ConstraintAwareLoss`: ``task_loss + weight * mean(violation)`` (a fixed penalty).
- :class:`LagrangianRelaxation`: ``Σ_i λ_i mean(violation_i)`` with one multiplier per
  constraint, raised by dual ascent ``λ_i <- max(0, λ_i + lr * mean(violation_i))`` while the
  constraint is violated (Bertsekas, *Nonlinear Programming*, ch. 5; Fioretto et al.,
  *Lagrangian duality for constrained deep learning*, ECML 2020).

Predictions are ``(B, C)`` or sequences ``(B, T, C)``; rate limits of a sequence are measured
between its consecutive steps. Temporal rules contribute nothing (they are monitored, not
trained on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kizzasi_lite.backends import namespace
from kizzasi_lite.errors import ConfigError
from kizzasi_lite.logic.guardrails import as_guardrail_set


def _plain(x: Any) -> Any:
    """The backend array behind an autodiff tensor (no gradient recorded)."""
    return getattr(x, "value", x) if getattr(type(x), "__kizzasi_tensor__", False) else x


class ConstraintAwareLoss:
    """``task_loss(pred, target) + weight * mean over streams (and steps) of the violation``.

    ``task_loss``: any differentiable function of ``(pred, target)`` returning a scalar.
    ``guardrails``: a :class:`~kizzasi_lite.logic.GuardrailSet`, a guardrail or constraints.
    ``squared``: squared hinge (smooth; the default) or plain hinge (exact penalty: a large
    enough weight makes the constrained optimum a minimum of the penalised loss).
    """

    def __init__(
        self,
        task_loss: Callable[[Any, Any], Any],
        guardrails: Any,
        weight: float = 1.0,
        *,
        squared: bool = True,
    ) -> None:
        if not weight >= 0:
            raise ConfigError(f"weight must be >= 0, got {weight!r}")
        self.task_loss = task_loss
        self.guardrails = as_guardrail_set(guardrails)
        self.weight = float(weight)
        self.squared = squared

    def penalty(self, pred: Any, previous: Any = None) -> Any:
        """``mean(Σ_i violation_i(pred))``, a scalar (differentiable)."""
        xp = namespace(pred)
        return xp.mean(self.guardrails.violation(pred, previous, squared=self.squared))

    def __call__(self, pred: Any, target: Any, previous: Any = None) -> Any:
        return self.task_loss(pred, target) + self.weight * self.penalty(pred, previous)


class LagrangianRelaxation:
    """One multiplier per constraint, raised while it is violated (dual ascent).

    ``loss = task + relax(pred)`` in the training step, then ``relax.update(pred)`` after it.
    ``multipliers[name]`` holds the current ``λ_i`` (floats, >= 0).
    """

    def __init__(
        self,
        guardrails: Any,
        learning_rate: float = 0.1,
        *,
        squared: bool = False,
        initial: float = 0.0,
        max_multiplier: float = 1e6,
    ) -> None:
        if not learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {learning_rate!r}")
        self.guardrails = as_guardrail_set(guardrails)
        self.learning_rate = float(learning_rate)
        self.squared = squared
        self.max_multiplier = float(max_multiplier)
        self.multipliers = {
            e.name: float(initial)
            for e in self.guardrails.entries
            if e.constraint.kind != "temporal"
        }

    def violations(self, pred: Any, previous: Any = None) -> dict[str, Any]:
        """The mean violation of every constraint (scalars, differentiable)."""
        xp = namespace(pred)
        return {
            e.name: xp.mean(e.constraint.violation(pred, previous, squared=self.squared))
            for e in self.guardrails.entries
            if e.name in self.multipliers
        }

    def __call__(self, pred: Any, previous: Any = None) -> Any:
        """``Σ_i λ_i mean(violation_i(pred))`` with the current multipliers."""
        total = 0.0 * namespace(pred).mean(pred)
        for name, v in self.violations(pred, previous).items():
            lam = self.multipliers[name]
            if lam:
                total = total + lam * v
        return total

    def update(self, pred: Any, previous: Any = None) -> dict[str, float]:
        """Raise each multiplier by ``learning_rate * mean violation``; returns the violations."""
        pred = _plain(pred)
        previous = None if previous is None else _plain(previous)
        out = {n: float(v) for n, v in self.violations(pred, previous).items()}
        for name, v in out.items():
            lam = self.multipliers[name] + self.learning_rate * v
            self.multipliers[name] = min(max(lam, 0.0), self.max_multiplier)
        return out


__all__ = ["ConstraintAwareLoss", "LagrangianRelaxation"]
