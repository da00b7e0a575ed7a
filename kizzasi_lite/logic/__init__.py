"""Guardrails: constraints that predictions satisfy by construction, temporal logic, losses.

- Constraints (:mod:`.constraints`): ``Range``, ``LessThan``, ``GreaterThan``, ``RateLimit``,
  ``Linear``, ``Quadratic``, ``TemporalRule``; ``BoundType`` and ``ConstraintBuilder``.
- :class:`GuardrailSet` (:mod:`.guardrails`): named guardrails with priorities;
  ``enforce(y, previous)`` returns the exact Euclidean projection onto the constraints
  (:mod:`.projection`: closed forms, Dykstra's algorithm with polishing and a certified stopping
  rule) and a report; infeasible sets raise ``GuardrailInfeasibleError`` naming the conflict,
  or are resolved by priority. Saved as ``guardrails.json`` (``to_json`` / ``from_json``).
- Temporal logic (:mod:`.formula`, :mod:`.monitor`, :mod:`.shield`, :mod:`.window`): LTL with
  bounded and past operators, ``parse("G(x0 <= 1.0) & G(x1 > 0.9 -> F[0,5] x1 < 0.5)")``,
  online monitors with a three-valued verdict and robustness, shields that enforce the safety
  fragment, sliding-window statistics checks.
- Losses (:mod:`.losses`): ``ConstraintAwareLoss`` and ``LagrangianRelaxation`` on the
  differentiable violation of every constraint.
"""

from kizzasi_lite.logic.constraints import (
    BoundType,
    Constraint,
    GreaterThan,
    LessThan,
    Linear,
    Quadratic,
    Range,
    RateLimit,
    TemporalRule,
)
from kizzasi_lite.logic.formula import Formula, FormulaSyntaxError, parse, to_text
from kizzasi_lite.logic.guardrails import (
    ConstraintBuilder,
    EnforcementReport,
    Guardrail,
    GuardrailSet,
    as_guardrail_set,
)
from kizzasi_lite.logic.losses import ConstraintAwareLoss, LagrangianRelaxation
from kizzasi_lite.logic.monitor import Monitor, MonitorResult, Verdict, check
from kizzasi_lite.logic.window import WindowChecker, WindowResult

__all__ = [
    "BoundType",
    "Constraint",
    "ConstraintAwareLoss",
    "ConstraintBuilder",
    "EnforcementReport",
    "Formula",
    "FormulaSyntaxError",
    "GreaterThan",
    "Guardrail",
    "GuardrailSet",
    "LagrangianRelaxation",
    "LessThan",
    "Linear",
    "Monitor",
    "MonitorResult",
    "Quadratic",
    "Range",
    "RateLimit",
    "TemporalRule",
    "Verdict",
    "WindowChecker",
    "WindowResult",
    "as_guardrail_set",
    "check",
    "parse",
    "to_text",
]
