"""Monitors against a brute-force evaluation of the formula on finite traces."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kizzasi_lite.errors import InputError
from kizzasi_lite.logic import formula as fm
from kizzasi_lite.logic.monitor import Monitor, Verdict, check

INF = math.inf

# ----------------------------------------------------------------------- the brute force
# Kleene values: True, False, None (unknown). Intervals: (lo, hi). A position i >= n (not seen
# yet) has unknown atoms and unknown pure-past subformulas; every position from n on looks the
# same, so position n stands for all of them.


def _and3(vals):
    vals = list(vals)
    if any(v is False for v in vals):
        return False
    return True if all(v is True for v in vals) else None


def _or3(vals):
    vals = list(vals)
    if any(v is True for v in vals):
        return True
    return False if all(v is False for v in vals) else None


def _not3(v):
    return None if v is None else not v


class Brute:
    def __init__(self, trace):
        self.trace = [list(map(float, r)) for r in trace]
        self.n = len(self.trace)
        self.memo = {}

    def _positions(self, i, lo, hi):
        """Positions i+lo .. i+hi (hi None: unbounded), cut after the first unseen one."""
        start = i + lo
        stop = max(start, self.n) if hi is None else i + hi
        return range(start, min(stop, max(start, self.n)) + 1)

    def val(self, f, i):
        """(kleene value, (lo, hi) robustness interval) of f at position i."""
        i = min(i, self.n)
        key = (f, i)
        if key not in self.memo:
            self.memo[key] = self._val(f, i)
        return self.memo[key]

    def _val(self, f, i):
        if isinstance(f, fm.Const):
            r = INF if f.value else -INF
            return f.value, (r, r)
        if isinstance(f, fm.Atom):
            if i >= self.n:
                return None, (-INF, INF)
            x = self.trace[i][f.channel]
            m = f.margin(x)
            return f.holds(x), (m, m)
        if isinstance(f, fm.PAST):
            if i >= self.n:
                return None, (-INF, INF)
            b, r = self.past(f, i)
            return b, (r, r)
        if isinstance(f, fm.Not):
            b, (lo, hi) = self.val(f.arg, i)
            return _not3(b), (-hi, -lo)
        if isinstance(f, fm.And | fm.Or):
            parts = [self.val(a, i) for a in f.args]
            return self._junction(isinstance(f, fm.And), parts)
        if isinstance(f, fm.Next):
            return self.val(f.arg, i + 1)
        if isinstance(f, fm.Always | fm.Eventually):
            parts = [self.val(f.arg, j) for j in self._positions(i, f.lo, f.hi)]
            return self._junction(isinstance(f, fm.Always), parts)
        if isinstance(f, fm.Until | fm.Release):
            until = isinstance(f, fm.Until)
            terms = []
            for j in self._positions(i, f.lo, f.hi):
                before = [self.val(f.left, k) for k in range(i, j)]
                if until:  # right at j and left at every k in [i, j)
                    terms.append(self._junction(True, [self.val(f.right, j), *before]))
                else:  # right at j or left at some k in [i, j)
                    terms.append(self._junction(False, [self.val(f.right, j), *before]))
            return self._junction(not until, terms)
        raise TypeError(f)

    @staticmethod
    def _junction(conj, parts):
        if not parts:
            r = INF if conj else -INF
            return conj, (r, r)
        b = (_and3 if conj else _or3)(p[0] for p in parts)
        pick = min if conj else max
        return b, (pick(p[1][0] for p in parts), pick(p[1][1] for p in parts))

    def past(self, f, i):
        """Two-valued past semantics at a seen position i: (truth, robustness)."""
        if isinstance(f, fm.Const):
            return f.value, (INF if f.value else -INF)
        if isinstance(f, fm.Atom):
            x = self.trace[i][f.channel]
            return f.holds(x), f.margin(x)
        if isinstance(f, fm.Not):
            b, r = self.past(f.arg, i)
            return not b, -r
        if isinstance(f, fm.And | fm.Or):
            parts = [self.past(a, i) for a in f.args]
            if isinstance(f, fm.And):
                return all(p[0] for p in parts), min(p[1] for p in parts)
            return any(p[0] for p in parts), max(p[1] for p in parts)
        if isinstance(f, fm.Previously):
            return self.past(f.arg, i - 1) if i > 0 else (False, -INF)
        if isinstance(f, fm.Once | fm.Historically):
            lo = 0 if f.hi is None else max(0, i - f.hi)
            parts = [self.past(f.arg, j) for j in range(lo, i - f.lo + 1)]
            if isinstance(f, fm.Once):
                return any(p[0] for p in parts), max((p[1] for p in parts), default=-INF)
            return all(p[0] for p in parts), min((p[1] for p in parts), default=INF)
        if isinstance(f, fm.Since):  # right at some j <= i and left at every k in (j, i]
            best_b, best_r = False, -INF
            for j in range(i + 1):
                rb, rr = self.past(f.right, j)
                later = [self.past(f.left, k) for k in range(j + 1, i + 1)]
                b = rb and all(p[0] for p in later)
                r = min([rr] + [p[1] for p in later])
                best_b, best_r = best_b or b, max(best_r, r)
            return best_b, best_r
        raise TypeError(f)


def brute(formula, trace):
    b, rob = Brute(trace).val(formula, 0)
    verdict = {True: Verdict.SATISFIED, False: Verdict.VIOLATED, None: Verdict.UNDECIDED}[b]
    return verdict, rob


# ------------------------------------------------------------------------ random formulas
VALUES = (-1.0, 0.0, 1.0)
atoms = st.builds(
    fm.Atom, st.integers(0, 1), st.sampled_from(fm.OPS), st.sampled_from((-0.5, 0.0, 0.5, 1.0))
)
bounds = st.tuples(st.integers(0, 2), st.integers(0, 2)).map(lambda t: (t[0], t[0] + t[1]))
maybe_bounds = st.one_of(st.just((0, None)), bounds, st.integers(0, 2).map(lambda a: (a, None)))


def _past(children):
    return st.one_of(
        st.builds(fm.Not, children),
        st.builds(lambda a, b: fm.And((a, b)), children, children),
        st.builds(lambda a, b: fm.Or((a, b)), children, children),
        st.builds(fm.Previously, children),
        st.builds(lambda a, ab: fm.Once(a, *ab), children, maybe_bounds),
        st.builds(lambda a, ab: fm.Historically(a, *ab), children, maybe_bounds),
        st.builds(fm.Since, children, children),
    )


past_formulas = st.recursive(atoms, _past, max_leaves=4)


def _future(children):
    return st.one_of(
        st.builds(fm.Not, children),
        st.builds(lambda a, b: fm.And((a, b)), children, children),
        st.builds(lambda a, b: fm.Or((a, b)), children, children),
        st.builds(fm.Next, children),
        st.builds(lambda a, ab: fm.Always(a, *ab), children, maybe_bounds),
        st.builds(lambda a, ab: fm.Eventually(a, *ab), children, maybe_bounds),
        st.builds(lambda a, b, ab: fm.Until(a, b, *ab), children, children, maybe_bounds),
        st.builds(lambda a, b, ab: fm.Release(a, b, *ab), children, children, maybe_bounds),
    )


formulas = st.recursive(
    st.one_of(atoms, past_formulas, st.builds(fm.Const, st.booleans())), _future, max_leaves=6
)
traces = st.lists(st.tuples(st.sampled_from(VALUES), st.sampled_from(VALUES)), max_size=7)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formulas, traces)
def test_monitor_matches_brute_force_on_every_prefix(formula, trace):
    m = Monitor(formula)
    for n in range(1, len(trace) + 1):
        got = m.update(list(trace[n - 1]))
        verdict, rob = brute(formula, trace[:n])
        assert got.verdict == verdict, (fm.to_text(formula), trace[:n])
        assert got.robustness == rob, (fm.to_text(formula), trace[:n])
        if got.lower > 0:
            assert got.verdict == Verdict.SATISFIED
        if got.upper < 0:
            assert got.verdict == Verdict.VIOLATED


@settings(max_examples=60, deadline=None)
@given(formulas, traces, traces)
def test_decided_verdicts_are_final(formula, trace, more):
    m = Monitor(formula)
    first = None
    for row in list(trace) + list(more):
        r = m.update(list(row))
        if first is None and r.verdict != Verdict.UNDECIDED:
            first = r.verdict
        if first is not None:
            assert r.verdict == first


def test_issue_example_verdicts_and_robustness():
    m = Monitor("G(x0 <= 1.0) & G(x1 > 0.9 -> F[0,5] x1 < 0.5)")
    r = m.update([0.5, 0.95])  # trigger
    assert r.verdict == Verdict.UNDECIDED and r.robustness == (-INF, 0.5)
    for _ in range(5):
        r = m.update([0.2, 0.7])  # no response within 5 steps
    assert r.verdict == Verdict.VIOLATED and r.upper < 0
    assert check("F[0,2] x0 > 1", [[0.0], [2.0]]).verdict == Verdict.SATISFIED
    assert check("F[0,2] x0 > 1", [[0.0], [0.0], [0.5]]).verdict == Verdict.VIOLATED
    assert check("F[0,2] x0 > 1", [[0.0], [0.0], [0.5]]).robustness == (-0.5, -0.5)


@pytest.mark.parametrize(
    "text",
    [
        "G(x1 > 0.9 -> F[0,5] x1 < 0.5)",
        "G(x0 > 0 -> F x1 > 0)",
        "G(x0 < 1 -> O[0,4] x1 > 0)",
        "G(x0 > 0 -> (x1 > 0 U x0 < -0.5))",
        "G(F x0 > 1.5)",
    ],
)
def test_memory_stays_bounded_on_long_streams(text):
    rng = np.random.default_rng(0)
    m = Monitor(text)
    sizes = []
    for _ in range(2000):
        m.update(rng.uniform(-1, 2, size=2).tolist())
        sizes.append(m.memory())
    assert max(sizes[1000:]) <= max(sizes[:1000])  # no growth with the length of the stream
    assert max(sizes) < 200


def test_batched_monitor_and_backends(xp):
    m = Monitor("G(x0 <= 1.0)")
    out = m.update(xp.asarray([[0.5, 0.0], [2.0, 0.0]]))
    assert [r.verdict for r in out] == [Verdict.UNDECIDED, Verdict.VIOLATED]
    assert m.verdict == [Verdict.UNDECIDED, Verdict.VIOLATED]
    with pytest.raises(InputError, match="streams"):
        m.update(xp.asarray([[0.5, 0.0]]))
    with pytest.raises(InputError, match="reads channel x0"):
        Monitor("x0 < 1").update([])
    with pytest.raises(InputError, match="NaN"):
        Monitor("x0 < 1").update([math.nan])


@pytest.mark.parametrize("statistic", ["mean", "variance", "range", "trend"])
def test_window_checker(xp, statistic):
    from kizzasi_lite.logic import WindowChecker

    rng = np.random.default_rng(1)
    data = rng.normal(size=(12, 2, 3))
    checker = WindowChecker(4, channel=1, statistic=statistic, lo=-0.5, hi=0.5)
    for t in range(12):
        res = checker.update(xp.asarray(data[t], dtype=xp.float64))
        if t < 3:
            assert res.verdicts == [Verdict.UNDECIDED] * 2
            continue
        w = data[t - 3 : t + 1, :, 1]  # (4, B)
        expect = {
            "mean": w.mean(0),
            "variance": w.var(0),
            "range": w.max(0) - w.min(0),
            "trend": np.polyfit(np.arange(4), w, 1)[0],
        }[statistic]
        np.testing.assert_allclose(np.asarray([float(v) for v in res.value]), expect, atol=1e-12)
        ok = (expect >= -0.5) & (expect <= 0.5)
        assert res.verdicts == [Verdict.SATISFIED if o else Verdict.VIOLATED for o in ok]
