"""Loading guardrail sets from JSON: the whole document is checked, and every malformed one is
rejected with a ConfigError that says what was expected and what was given."""

from __future__ import annotations

import copy
import inspect
import json
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kizzasi_lite.errors import ConfigError, KizzasiError
from kizzasi_lite.logic import GuardrailSet, Range, RateLimit

VALID = {
    "format": "kizzasi-guardrails",
    "version": 1,
    "policy": "raise",
    "tolerance": 1e-9,
    "guardrails": [
        {
            "name": "limits",
            "priority": 0,
            "constraints": [
                {"type": "range", "lo": -1.0, "hi": 1.0, "channel": 0},
                {"type": "rate_limit", "delta": 0.1},
                {"type": "quadratic", "Q": [[1.0, 0.0], [0.0, 1.0]], "c": None, "b": 4.0},
                {"type": "temporal", "formula": "G(x1 <= 1.0)"},
            ],
        }
    ],
}


def _with(path: tuple, value=None, *, delete: bool = False) -> dict:
    """VALID with the item at ``path`` replaced by ``value`` (or deleted)."""
    doc = copy.deepcopy(VALID)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def test_the_reference_document_loads():
    rails = GuardrailSet.from_dict(VALID)
    assert len(rails) == 4 and rails.policy == "raise"
    assert GuardrailSet.from_json(rails.to_json()) == rails


@pytest.mark.parametrize(
    ("text", "given_"),
    [("[1, 2]", "list [1, 2]"), ('"hi"', "str 'hi'"), ("3", "int 3"), ("null", "NoneType")],
)
def test_a_document_that_is_not_an_object_is_named(text, given_):
    with pytest.raises(ConfigError) as err:
        GuardrailSet.from_json(text)
    msg = str(err.value)
    assert "JSON object with the keys" in msg and "'policy'" in msg and given_ in msg


def test_text_that_is_not_json_is_a_config_error():
    with pytest.raises(ConfigError, match="expected JSON"):
        GuardrailSet.from_json("{not json")


@pytest.mark.parametrize("key", ["policy", "tolerance", "guardrails", "version"])
def test_a_missing_key_is_named_with_the_keys_given(key):
    with pytest.raises(ConfigError, match=rf"missing \['{key}'\]") as err:
        GuardrailSet.from_dict(_with((key,), delete=True))
    assert "keys given: 'format'" in str(err.value)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("polcy",), "raise", r"unknown \['polcy'\]"),
        (("version",), True, "version True is not supported"),
        (("version",), 2, "version 2 is not supported"),
        (("format",), "other", "'format' must be 'kizzasi-guardrails'"),
        (("policy",), "ignore", "policy must be one of"),
        (("policy",), None, "policy must be one of"),
        (("tolerance",), "1e-9", "tolerance must be a number"),
        (("tolerance",), 0.5, "tolerance must be a number in"),
        (("guardrails",), {"name": "a"}, "'guardrails' is a list"),
        (("guardrails", 0), "limits", r"guardrails\[0\] is a JSON object"),
        (("guardrails", 0, "priority"), 1.5, "'priority' must be an integer, got 1.5"),
        (("guardrails", 0, "priority"), True, "'priority' must be an integer"),
        (("guardrails", 0, "name"), 7, "name is a non-empty string"),
        (("guardrails", 0, "extra"), 1, r"unknown \['extra'\]"),
        (("guardrails", 0, "constraints"), "range", "'constraints' is a list"),
        (("guardrails", 0, "constraints", 0), [1, 2], 'a constraint is an object {"type"'),
        (("guardrails", 0, "constraints", 0, "type"), "box", "unknown constraint type 'box'"),
        (("guardrails", 0, "constraints", 0, "lo"), "low", "Range lo must be a number"),
        (("guardrails", 0, "constraints", 0, "bogus"), 1, r"unknown \['bogus'\]"),
        (("guardrails", 0, "constraints", 1, "delta"), None, "RateLimit delta must be a number"),
        (("guardrails", 0, "constraints", 2, "Q"), [[1.0, 0.0]], "Q must be square"),
        (("guardrails", 0, "constraints", 3, "enforce"), "yes", "enforce must be True or False"),
    ],
)
def test_a_malformed_value_is_named(path, value, message):
    with pytest.raises(ConfigError, match=message):
        GuardrailSet.from_dict(_with(path, value))


def test_a_constraint_missing_a_required_field_names_the_fields():
    doc = _with(("guardrails", 0, "constraints", 0, "hi"), delete=True)
    with pytest.raises(ConfigError) as err:
        GuardrailSet.from_dict(doc)
    msg = str(err.value)
    assert "guardrail 'limits', constraint 0" in msg
    assert "['lo', 'hi'] (required)" in msg and "missing ['hi']" in msg


def test_the_docstring_example_loads():
    doc = inspect.getdoc(GuardrailSet.from_json)
    example = doc.split("For example")[1].split("::", 1)[1].split("\n\n")[1]
    rails = GuardrailSet.from_json(textwrap.dedent(example))
    want = GuardrailSet().add(
        [Range(-1.0, 1.0, channel=0), RateLimit(0.1, channel=0)], name="limits"
    )
    assert rails == want


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False)
    | st.sampled_from(["inf", "-inf", "range", "raise", "x0 <= 1", "kizzasi-guardrails"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


PATHS = [p for p in _paths(VALID) if p]


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_is_loaded_or_rejected_with_a_kizzasi_error(value):
    try:
        GuardrailSet.from_json(json.dumps(value))
    except KizzasiError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PATHS), json_values, st.booleans())
def test_a_damaged_document_is_loaded_or_rejected_with_a_kizzasi_error(path, value, delete):
    doc = _with(path, value, delete=delete)
    try:
        rails = GuardrailSet.from_dict(doc)
    except KizzasiError:
        return
    assert GuardrailSet.from_json(rails.to_json()) == rails  # what loads, saves and reloads
