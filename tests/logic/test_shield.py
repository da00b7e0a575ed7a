"""The shield's condition for a step is exactly "the rule is not violated by this step"."""

from __future__ import annotations

import copy
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kizzasi_lite.logic import formula as fm
from kizzasi_lite.logic.formula import parse
from kizzasi_lite.logic.monitor import StreamMonitor, Verdict
from kizzasi_lite.logic.shield import Reach, boxes, not_false
from tests.logic.test_monitor import formulas, traces

VALUES = (-1.0, -0.5, 0.0, 0.5, 1.0)


def holds(cond, x):
    if isinstance(cond, fm.Const):
        return cond.value
    if isinstance(cond, fm.Atom):
        return cond.holds(x[cond.channel])
    parts = [holds(a, x) for a in cond.args]
    return all(parts) if isinstance(cond, fm.And) else any(parts)


def in_boxes(found, x):
    def inside(b, c):
        lo, hi = b.lo[c], b.hi[c]
        return (x[c] > lo or (x[c] == lo and not b.lo_strict[c])) and (
            x[c] < hi or (x[c] == hi and not b.hi_strict[c])
        )

    return any(all(inside(b, c) for c in range(len(x))) for b in found)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(formulas, traces, st.tuples(st.sampled_from(VALUES), st.sampled_from(VALUES)))
def test_condition_is_exactly_not_violated_now(formula, trace, x):
    m = StreamMonitor(formula)
    for row in trace:
        m.step(list(row))
    cond = not_false(m.truth, m.past, [math.inf, math.inf])
    after = copy.deepcopy(m).step(list(x)).verdict
    assert holds(cond, x) == (after != Verdict.VIOLATED)
    assert in_boxes(boxes(cond, 2), x) == holds(cond, x)


def test_look_ahead_uses_rate_limits_and_static_bounds():
    m = StreamMonitor(parse("G(x0 > 0.9 -> F[0,5] x0 < 0.5)"))
    free = boxes(not_false(m.truth, m.past, Reach([math.inf])), 1)
    assert len(free) == 1 and free[0].hi == [math.inf]
    slow = boxes(not_false(m.truth, m.past, Reach([0.05])), 1)
    assert [b.hi for b in slow] == [[0.9]]  # 0.9 + ... would need 8 steps to come back
    fast = boxes(not_false(m.truth, m.past, Reach([0.1])), 1)
    assert [(b.hi, b.hi_strict) for b in fast] == [([1.0], [True])]  # x0 < 0.5 + 5 * 0.1
    floor = boxes(not_false(m.truth, m.past, Reach([math.inf], [0.6], [2.0])), 1)
    assert [b.hi for b in floor] == [[0.9]]  # x0 < 0.5 can never be met above 0.6
