"""The text syntax of temporal formulas: parsing, printing, errors, static properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings

from kizzasi_lite.errors import InputError
from kizzasi_lite.logic import formula as fm
from kizzasi_lite.logic.formula import FormulaSyntaxError, parse, to_text
from tests.logic.test_monitor import formulas


def test_the_issue_example_parses():
    f = parse("G(x0 <= 1.0) & G(x1 > 0.9 -> F[0,5] x1 < 0.5)")
    assert f == fm.And(
        (
            fm.Always(fm.Atom(0, "<=", 1.0)),
            fm.Always(
                fm.Or((fm.Not(fm.Atom(1, ">", 0.9)), fm.Eventually(fm.Atom(1, "<", 0.5), 0, 5)))
            ),
        )
    )
    assert fm.horizon(f) == math.inf and fm.is_safety(f)
    assert fm.channels(f) == {0, 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x0 < 1", fm.Atom(0, "<", 1.0)),
        ("1.5 >= x3", fm.Atom(3, "<=", 1.5)),
        ("x0 > -2e-3", fm.Atom(0, ">", -0.002)),
        ("!x0 < 1", fm.Not(fm.Atom(0, "<", 1.0))),
        (
            "not x0 < 1 and x1 > 0 or true",
            fm.Or((fm.And((fm.Not(fm.Atom(0, "<", 1.0)), fm.Atom(1, ">", 0.0))), fm.Const(True))),
        ),
        ("X x0 < 1", fm.Next(fm.Atom(0, "<", 1.0))),
        ("GF x0 < 1", fm.Always(fm.Eventually(fm.Atom(0, "<", 1.0)))),
        ("G[2,inf] x0 < 1", fm.Always(fm.Atom(0, "<", 1.0), 2, None)),
        ("x0 < 1 U[1,3] x1 > 2", fm.Until(fm.Atom(0, "<", 1.0), fm.Atom(1, ">", 2.0), 1, 3)),
        ("x0 < 1 R x1 > 2", fm.Release(fm.Atom(0, "<", 1.0), fm.Atom(1, ">", 2.0))),
        (
            "H[0,3] x0 < 1 S Y x1 > 2",
            fm.Since(
                fm.Historically(fm.Atom(0, "<", 1.0), 0, 3), fm.Previously(fm.Atom(1, ">", 2.0))
            ),
        ),
        (
            "O x0 < 1 -> x1 > 2 -> false",
            fm.Or(
                (
                    fm.Not(fm.Once(fm.Atom(0, "<", 1.0))),
                    fm.Or((fm.Not(fm.Atom(1, ">", 2.0)), fm.Const(False))),
                )
            ),
        ),
        ("temp <= 3", fm.Atom(7, "<=", 3.0)),
    ],
)
def test_parse(text, expected):
    assert parse(text, names={"temp": 7}) == expected


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("G(x0 <= 1.0", "expected ')'", 12),
        ("G(x0 <= )", "expected a number", 9),
        ("speed < 1", "unknown name 'speed'", 1),
        ("O F x0 < 1", "past operator O may only contain", 1),
        ("F[3,1] x0 < 1", "needs a <= b", 5),
        ("F[0.5,1] x0 < 1", "whole number of steps", 3),
        ("x0 < 1 x1 < 2", "expected an operator", 8),
        ("", "expected a formula", 1),
        ("x0 == 1", "== is not supported", 4),
        ("x0 < 1 $", "unexpected character '$'", 8),
        ("x0 < 1 S[0,2] x1 < 1", "S takes no bounds", 8),
        ("x0 <", "expected a number", 5),
    ],
)
def test_errors_say_where_and_what(text, message, column):
    with pytest.raises(FormulaSyntaxError) as err:
        parse(text)
    assert message in str(err.value)
    assert f"column {column}:" in str(err.value)
    assert isinstance(err.value, InputError)


@settings(max_examples=200, deadline=None)
@given(formulas)
def test_print_parse_round_trip(f):
    assert parse(to_text(f)) == f


def test_static_properties():
    f = parse("G[1,3](x0 < 1 -> X F[0,2] x1 > 0) & O[0,4] x0 > 0 & Y Y x1 > 0")
    assert fm.horizon(f) == 3 + 1 + 2
    assert fm.past_depth(f) == 4
    assert fm.is_safety(parse("G(x0 < 1 -> F[0,3] x0 > 0)"))
    assert not fm.is_safety(parse("G(x0 < 1 -> F x0 > 0)"))
    assert fm.is_safety(parse("!F(x0 > 1)"))  # = G(x0 <= 1)
    assert not fm.is_safety(parse("!G(x0 > 1)"))
    assert fm.is_pure_past(parse("H(x0 < 1) S x1 > 0"))


def test_simplify_folds_constants():
    assert fm.simplify(parse("G(true) & x0 < 1")) == parse("x0 < 1")
    assert fm.simplify(parse("x0 < 1 U[2,4] true")) == parse("G[0,1] x0 < 1")
    assert fm.simplify(parse("false U x0 < 1")) == parse("x0 < 1")
    assert fm.simplify(parse("X !false")) == fm.Const(True)
    assert fm.simplify(parse("x0 < 1 R false")) == fm.Const(False)


NESTINGS = {
    "next": lambda k: "X " * k + "x0 <= 1",
    "not": lambda k: "!" * k + "x0 <= 1",
    "parentheses": lambda k: "(" * k + "x0 <= 1" + ")" * k,
    "until": lambda k: "x0 <= 1 U (" * k + "x0 <= 1" + ")" * k,
    "implies": lambda k: "x0 <= 1 -> " * k + "x0 <= 1",
    "once": lambda k: "O[0,2] " * k + "x0 <= 1",
}


@pytest.mark.parametrize("make", NESTINGS.values(), ids=NESTINGS.keys())
def test_deep_nesting_is_a_clear_error_not_a_recursion_error(make):
    from kizzasi_lite.logic import Monitor, TemporalRule

    for build in (parse, Monitor, TemporalRule):
        with pytest.raises(FormulaSyntaxError, match=f"more than {fm.MAX_DEPTH}"):
            build(make(2000))


@pytest.mark.parametrize("make", NESTINGS.values(), ids=NESTINGS.keys())
def test_formulas_at_the_depth_limit_work_everywhere(make):
    from kizzasi_lite.logic import GuardrailSet, Monitor, TemporalRule

    k = max(k for k in range(fm.MAX_DEPTH + 2) if _parses(make(k)))
    assert k >= fm.MAX_DEPTH - 2  # the limit counts nesting, not characters
    f = parse(make(k))
    assert parse(to_text(f)) == f
    monitor = Monitor(f)
    for _ in range(3):
        monitor.update([0.5])
    rails = GuardrailSet().add(TemporalRule(f, enforce=False))
    rails.enforce([[0.5]])


def _parses(text: str) -> bool:
    try:
        parse(text)
    except FormulaSyntaxError:
        return False
    return True


def test_deep_formula_trees_are_rejected_before_recursing():
    from kizzasi_lite.logic import Monitor, TemporalRule

    f = fm.Atom(0, "<=", 1.0)
    for _ in range(5000):
        f = fm.Next(f)
    for use in (parse, to_text, Monitor, TemporalRule):
        with pytest.raises(FormulaSyntaxError, match="nested 5001 levels deep"):
            use(f)


def test_iff_chains_are_limited_by_size_in_linear_time():
    text = "x0 <= 1 <-> " * 20 + "x0 <= 1"  # 61 levels deep; written out: ~2**21 nodes
    with pytest.raises(FormulaSyntaxError, match="nodes"):
        parse(text)
    with pytest.raises(FormulaSyntaxError, match="nodes"):
        parse("O(" + text + ")")  # past operators walk their operand while parsing
