"""Canonical JSON encoding and the strict (room v6+) number rules."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeserver.core.canonical_json import (
    MAX_SAFE_INTEGER,
    MIN_SAFE_INTEGER,
    CanonicalJSONError,
    check_strict_canonical,
    dumps_compact,
    encode_canonical_json,
    is_strict_canonical,
    parse_json,
)
from tests.unit.conftest import VECTORS

CASES = VECTORS["canonical_json"]["cases"]


@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
def test_spec_examples(case: dict[str, str]) -> None:
    value = parse_json(case["input_json_text"], integral_numbers_as_int=True)
    assert encode_canonical_json(value) == case["expected_canonical_json"].encode("utf-8")
    assert dumps_compact(value) == case["expected_canonical_json"]
    check_strict_canonical(value)


def test_floats_are_kept_by_default_parse() -> None:
    # A room v1-v5 event may carry 1.0; re-encoding it as 1 would change its hash.
    assert encode_canonical_json(parse_json('{"a": 1.0}')) == b'{"a":1.0}'
    assert encode_canonical_json(parse_json('{"a": 1.5}', integral_numbers_as_int=True)) == b'{"a":1.5}'


def test_parse_rejects_nan_and_infinity() -> None:
    for text in ("NaN", "[Infinity]", '{"a": -Infinity}'):
        with pytest.raises(ValueError):
            parse_json(text)


def test_non_ascii_is_utf8_and_control_characters_escaped() -> None:
    assert encode_canonical_json({"a": 'é\n\u0001"\\'}) == '{"a":"é\\n\\u0001\\"\\\\"}'.encode()


def test_keys_sorted_by_code_point() -> None:
    # "Z" < "a" < "é" < "日" by code point; a locale-aware sort would differ.
    obj = {"日": 1, "a": 2, "é": 3, "Z": 4}
    assert encode_canonical_json(obj) == '{"Z":4,"a":2,"é":3,"日":1}'.encode()


@pytest.mark.parametrize(
    "value",
    [
        0,
        MAX_SAFE_INTEGER,
        MIN_SAFE_INTEGER,
        True,
        None,
        "x",
        [],
        {"a": [1, {"b": [None, False, "c"]}]},
        (1, 2),
    ],
)
def test_strict_accepts(value: Any) -> None:
    check_strict_canonical(value)
    assert is_strict_canonical(value)


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        -0.0,
        math.nan,
        math.inf,
        MAX_SAFE_INTEGER + 1,
        MIN_SAFE_INTEGER - 1,
        2**63,
        {"a": {"b": [1, 2, {"c": 0.5}]}},
        [[[[2**60]]]],
        {1: "non-string key"},
        {"a": {1, 2}},
        {"a": b"bytes"},
    ],
)
def test_strict_rejects(value: Any) -> None:
    with pytest.raises(CanonicalJSONError):
        check_strict_canonical(value)
    assert not is_strict_canonical(value)


def test_canonical_json_error_is_a_value_error() -> None:
    assert issubclass(CanonicalJSONError, ValueError)


def test_strict_check_survives_deep_nesting() -> None:
    # Remote content can nest deeper than Python's recursion limit.
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    check_strict_canonical(deep)
    deep_bad: Any = 1.5
    for _ in range(100_000):
        deep_bad = {"a": deep_bad}
    with pytest.raises(CanonicalJSONError):
        check_strict_canonical(deep_bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(MIN_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(json_values)
def test_encoding_is_parseable_and_stable(value: Any) -> None:
    encoded = encode_canonical_json(value)
    assert json.loads(encoded) == value
    # Canonical: encoding the decoded value gives the same bytes.
    assert encode_canonical_json(json.loads(encoded)) == encoded
    check_strict_canonical(value)
