"""The text syntax of temporal formulas: printing (:func:`to_text`) and parsing (:func:`parse`).

The grammar is in the docstring of :mod:`kizzasi_lite.logic.formula`. Errors are
:class:`~kizzasi_lite.logic.formula.FormulaSyntaxError` with the column and a caret under it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from kizzasi_lite.logic.formula import (
    FUTURE,
    MAX_DEPTH,
    OPS,
    PAST,
    Always,
    And,
    Atom,
    Const,
    Eventually,
    Formula,
    FormulaSyntaxError,
    Historically,
    Next,
    Not,
    Once,
    Or,
    Previously,
    Release,
    Since,
    Until,
    check_depth,
    children,
    is_pure_past,
)

_PREFIX = {"G": Always, "F": Eventually, "O": Once, "H": Historically}
_BINARY = {"U": Until, "R": Release, "S": Since}


# ------------------------------------------------------------------------------------ printing
def _bounds(f: Formula) -> str:
    lo, hi = getattr(f, "lo", 0), getattr(f, "hi", None)
    if lo == 0 and hi is None:
        return ""
    return f"[{lo},{'inf' if hi is None else hi}]"


def to_text(f: Formula) -> str:
    """The formula in the text syntax; ``parse(to_text(f)) == f`` (implications print as ``|``).

    Raises FormulaSyntaxError for a formula deeper or larger than :func:`parse` accepts."""
    return _text(check_depth(f))


def _text(f: Formula) -> str:
    if isinstance(f, Const):
        return "true" if f.value else "false"
    if isinstance(f, Atom):
        return f"x{f.channel} {f.op} {f.value!r}"
    if isinstance(f, Not):
        return f"!({_text(f.arg)})"
    if isinstance(f, And | Or):
        sep = " & " if isinstance(f, And) else " | "
        return "(" + sep.join(_text(a) for a in f.args) + ")"
    if isinstance(f, Until | Release | Since):
        op = {Until: "U", Release: "R", Since: "S"}[type(f)]
        return f"({_text(f.left)}) {op}{_bounds(f)} ({_text(f.right)})"
    op = {Next: "X", Always: "G", Eventually: "F", Previously: "Y", Once: "O", Historically: "H"}
    return f"{op[type(f)]}{_bounds(f)}({_text(f.arg)})"


# ------------------------------------------------------------------------------------- parsing
_TOKEN = re.compile(
    r"\s*(?:(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<op><->|->|=>|<=|>=|&&|\|\||[()\[\],!~&|<>]))"
)
_WORDS = {"and": "&", "or": "|", "not": "!", "implies": "->"}


@dataclass
class _Tok:
    kind: str  # "num", "name", "op", "end"
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    toks, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            col = pos + len(text[pos:]) - len(text[pos:].lstrip())
            if text[col : col + 2] in ("==", "!="):
                raise _error(
                    text, col, f"{text[col : col + 2]} is not supported (write x0 <= v & x0 >= v)"
                )
            raise _error(text, col, f"unexpected character {text[col]!r}")
        kind = m.lastgroup
        start = m.start(kind)
        word = m.group(kind)
        if kind == "name" and word.lower() in _WORDS:
            kind, word = "op", _WORDS[word.lower()]
        if kind == "name" and len(word) > 1 and set(word) <= set("GFXYOH"):
            toks.extend(_Tok("name", ch, start + i) for i, ch in enumerate(word))  # "GF" = G F
        else:
            toks.append(
                _Tok(kind, {"&&": "&", "||": "|", "~": "!", "=>": "->"}.get(word, word), start)
            )
        pos = m.end()
    toks.append(_Tok("end", "", len(text)))
    return toks


def _error(text: str, pos: int, message: str) -> FormulaSyntaxError:
    return FormulaSyntaxError(f"{message} at column {pos + 1}:\n  {text}\n  {' ' * pos}^")


class _Parser:
    def __init__(self, text: str, names: dict[str, int] | None) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.names = dict(names or {})
        self.depth = 0  # nesting: parentheses, prefix operators, right-nested binary operators

    def nest(self) -> None:
        """Enter one more level of nesting (undone by :meth:`unnest`), at most MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"the formula is nested more than {MAX_DEPTH} levels deep (the limit)")

    def unnest(self) -> None:
        self.depth -= 1

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def fail(self, message: str, tok: _Tok | None = None) -> FormulaSyntaxError:
        tok = tok or self.tok
        found = "the end of the formula" if tok.kind == "end" else repr(tok.text)
        return _error(self.text, tok.pos, f"{message}, found {found}")

    def take(self, text: str) -> bool:
        if self.tok.kind in ("op", "name") and self.tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str, what: str) -> None:
        if not self.take(text):
            raise self.fail(f"expected {what}")

    def parse(self) -> Formula:
        if self.tok.kind == "end":
            raise self.fail("expected a formula")
        f = self.implies()
        if self.tok.kind != "end":
            raise self.fail("expected an operator (& | -> U R S) or the end of the formula")
        return f

    def implies(self) -> Formula:
        self.nest()
        left = self.disjunction()
        if self.take("<->"):
            right = self.implies()
            out: Formula = And((Or((Not(left), right)), Or((Not(right), left))))
        elif self.take("->"):
            out = Or((Not(left), self.implies()))
        else:
            out = left
        self.unnest()
        return out

    def disjunction(self) -> Formula:
        args = [self.conjunction()]
        while self.take("|"):
            args.append(self.conjunction())
        return args[0] if len(args) == 1 else Or(tuple(args))

    def conjunction(self) -> Formula:
        args = [self.binary()]
        while self.take("&"):
            args.append(self.binary())
        return args[0] if len(args) == 1 else And(tuple(args))

    def binary(self) -> Formula:
        left = self.unary()
        tok = self.tok
        if tok.kind == "name" and tok.text in _BINARY:
            self.i += 1
            lo, hi = self.bounds(tok.text)
            right = self.operand(self.binary)
            if tok.text == "S":
                if (lo, hi) != (0, None):
                    raise self.fail("S takes no bounds (use O[a,b] / H[a,b])", tok)
                return self.past(Since(left, right), tok)
            return _BINARY[tok.text](left, right, lo, hi)
        return left

    def past(self, f: Formula, tok: _Tok) -> Formula:
        check_depth(f)  # before walking it: a chain of <-> inside would take exponential time
        for c in children(f):
            if not is_pure_past(c):
                raise _error(
                    self.text,
                    tok.pos,
                    f"past operator {tok.text} may only contain atoms, Boolean connectives and "
                    "past operators (no X G F U R inside it)",
                )
        return f

    def unary(self) -> Formula:
        tok = self.tok
        if self.take("!"):
            return Not(self.operand())
        if tok.kind == "name" and tok.text in ("X", "Y"):
            self.i += 1
            arg = self.operand()
            return Next(arg) if tok.text == "X" else self.past(Previously(arg), tok)
        if tok.kind == "name" and tok.text in _PREFIX:
            self.i += 1
            lo, hi = self.bounds(tok.text)
            f = _PREFIX[tok.text](self.operand(), lo, hi)
            return self.past(f, tok) if tok.text in "OH" else f
        return self.primary()

    def operand(self, rule: Any = None) -> Formula:
        """The operand of an operator (parsed by ``rule``, default :meth:`unary`): one level
        deeper, counted by the parenthesis when it has one (so ``X(X(φ))`` counts 2, as
        ``X X φ`` does)."""
        rule = rule or self.unary
        if self.tok.kind == "op" and self.tok.text == "(":
            return rule()
        self.nest()
        f = rule()
        self.unnest()
        return f

    def bounds(self, op: str) -> tuple[int, int | None]:
        if not self.take("["):
            return 0, None
        lo = self.step_count(f"a whole number of steps after {op}[")
        self.expect(",", f"',' between the bounds of {op}[a,b]")
        if self.tok.kind == "name" and self.tok.text == "inf":
            self.i += 1
            hi = None
        else:
            hi = self.step_count(f"a whole number of steps or 'inf' in {op}[a,b]")
            if hi < lo:
                raise _error(self.text, self.toks[self.i - 1].pos, f"{op}[{lo},{hi}] needs a <= b")
        self.expect("]", f"']' closing {op}[a,b]")
        return lo, hi

    def step_count(self, what: str) -> int:
        tok = self.tok
        if tok.kind != "num" or not re.fullmatch(r"\d+", tok.text):
            raise self.fail(f"expected {what}")
        self.i += 1
        return int(tok.text)

    def primary(self) -> Formula:
        tok = self.tok
        if self.take("("):
            f = self.implies()
            self.expect(")", "')'")
            return f
        if tok.kind == "name" and tok.text in ("true", "false"):
            self.i += 1
            return Const(tok.text == "true")
        if tok.kind in ("name", "num"):
            return self.atom()
        raise self.fail("expected a formula (an atom such as x0 <= 1.0, '(', '!', or an operator)")

    def channel(self) -> int | None:
        tok = self.tok
        if tok.kind != "name":
            return None
        if tok.text in self.names:
            ch = self.names[tok.text]
        elif re.fullmatch(r"x\d+", tok.text):
            ch = int(tok.text[1:])
        else:
            known = ", ".join(sorted(self.names)) or "none declared"
            raise _error(
                self.text,
                tok.pos,
                f"unknown name {tok.text!r}: channels are x0, x1, ... or declared names "
                f"({known}); temporal operators are the single letters X G F U R Y O H S",
            )
        self.i += 1
        return ch

    def number(self) -> float:
        tok = self.tok
        if tok.kind == "name" and tok.text in ("inf", "Infinity"):
            self.i += 1
            return math.inf
        if tok.kind != "num":
            raise self.fail("expected a number")
        self.i += 1
        return float(tok.text)

    def comparison(self) -> str:
        tok = self.tok
        if tok.kind == "op" and tok.text in OPS:
            self.i += 1
            return tok.text
        raise self.fail("expected a comparison (< <= > >=)")

    def atom(self) -> Formula:
        ch = self.channel()
        if ch is not None:
            op = self.comparison()
            return Atom(ch, op, self.number())
        value = self.number()  # "1.0 >= x0" is "x0 <= 1.0"
        op = self.comparison()
        ch = self.channel()
        if ch is None:
            raise self.fail("expected a channel (x0, x1, ...)")
        return Atom(ch, {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op], value)


def parse(text: str, *, names: dict[str, int] | None = None) -> Formula:
    """Parse the text syntax of the module docstring into a formula.

    ``names`` maps extra channel names to channel indices. Raises :class:`FormulaSyntaxError`
    (an ``InputError``) saying where the text stops making sense and what was expected there,
    and for formulas (text or trees) nested more than ``MAX_DEPTH`` (64) levels deep.
    """
    if isinstance(text, (Const, Atom, Not, And, Or, *FUTURE, *PAST)):
        return check_depth(text)
    if not isinstance(text, str):
        raise FormulaSyntaxError(f"a formula is a string, got {type(text).__name__}")
    return check_depth(_Parser(text, names).parse())  # "a <-> b" nests deeper than it reads


__all__ = ["parse", "to_text"]
