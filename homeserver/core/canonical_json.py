"""Canonical JSON (appendices § Canonical JSON) and the strict number rules of room v6+."""

from __future__ import annotations

import json
from typing import Any

from canonicaljson import encode_canonical_json as _encode_canonical_json

__all__ = [
    "MAX_SAFE_INTEGER",
    "MIN_SAFE_INTEGER",
    "CanonicalJSONError",
    "check_strict_canonical",
    "dumps_compact",
    "encode_canonical_json",
    "is_strict_canonical",
    "parse_json",
]

MAX_SAFE_INTEGER = 2**53 - 1
MIN_SAFE_INTEGER = -(2**53) + 1


class CanonicalJSONError(ValueError):
    """A value that canonical JSON (as enforced from room version 6) does not allow."""


def encode_canonical_json(obj: Any) -> bytes:
    """UTF-8 bytes of ``obj`` with sorted keys, no whitespace and no ASCII escaping.

    Numbers are emitted as Python gives them: floats are not rejected here,
    because events of room versions 1-5 may carry them and their hashes must
    still be computed. Call :func:`check_strict_canonical` where the rules apply.
    """
    return _encode_canonical_json(obj)


def dumps_compact(obj: Any) -> str:
    """Canonical JSON as a ``str`` (for logging, storage columns, HTTP bodies)."""
    return _encode_canonical_json(obj).decode("utf-8")


def check_strict_canonical(obj: Any) -> None:
    """Raise :class:`CanonicalJSONError` unless ``obj`` is valid strict canonical JSON.

    Rejects floats (including NaN and infinities), integers outside
    ``[-(2**53)+1, 2**53-1]``, non-string object keys and values that are not
    JSON at all. Walks the value with an explicit stack: event content comes
    from remote servers and must not be able to exhaust Python's recursion limit.
    """
    stack: list[Any] = [obj]
    pop = stack.pop
    push = stack.extend
    while stack:
        value = pop()
        t = type(value)
        # Exact type checks first: they are the common case and the cheapest.
        if t is str or t is bool or value is None:
            continue
        if t is int:
            if not MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                raise CanonicalJSONError(f"integer out of range: {value}")
            continue
        if t is dict:
            for key in value:
                if type(key) is not str:
                    raise CanonicalJSONError(f"object key is not a string: {key!r}")
            push(value.values())
            continue
        if t is list or t is tuple:
            push(value)
            continue
        if isinstance(value, float):
            raise CanonicalJSONError(f"floats are not allowed: {value!r}")
        # Subclasses of the JSON types (rare): judge them as their base type.
        if isinstance(value, bool | str):
            continue
        if isinstance(value, int):
            stack.append(int(value))
            continue
        if isinstance(value, dict):
            stack.append(dict(value))
            continue
        if isinstance(value, list | tuple):
            push(value)
            continue
        raise CanonicalJSONError(f"not a JSON value: {t.__name__}")


def is_strict_canonical(obj: Any) -> bool:
    try:
        check_strict_canonical(obj)
    except CanonicalJSONError:
        return False
    return True


def _parse_number_as_int_if_integral(text: str) -> int | float:
    value = float(text)
    # JSON has one number type; "1e10" and "-0.0" are integers in value, and
    # the spec's examples canonicalise them as such.
    if value.is_integer():
        return int(value)
    return value


def parse_json(text: str | bytes, *, integral_numbers_as_int: bool = False) -> Any:
    """Parse JSON text.

    With ``integral_numbers_as_int`` numbers written with a fraction or
    exponent but whole in value (``1e10``, ``2.0``) become ``int``, as the
    canonical JSON examples require. It is off by default because re-encoding
    ``1.0`` as ``1`` would change the content hash of a room v1-v5 event whose
    sender encoded a float.
    """
    if integral_numbers_as_int:
        return json.loads(text, parse_float=_parse_number_as_int_if_integral, parse_constant=_reject_constant)
    return json.loads(text, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity, which are not JSON.
    raise ValueError(f"not valid JSON: {name}")
