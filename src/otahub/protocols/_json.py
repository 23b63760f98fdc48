"""JSON decoding and encoding shared by the dialect modules.

Device payloads are untrusted bytes. Every failure mode of :func:`json.loads`
(invalid UTF-8, syntax errors, nesting deep enough to exhaust the recursion
limit, integers longer than the interpreter's digit limit) is turned into the
calling module's own error class, so a dialect parser never leaks a raw
``ValueError`` or ``RecursionError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import NoReturn, TypeAlias, TypeGuard, cast

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
JSONObject: TypeAlias = "dict[str, JSONValue]"

ErrorFactory: TypeAlias = Callable[[str], Exception]

Payload: TypeAlias = "bytes | bytearray | memoryview | str"


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON; the Java and Rust parsers on the other
    # end refuse them, so accepting them here would diverge from upstream.
    raise ValueError(f"{name} is not valid JSON")


# one decoder for every payload: json.loads with an argument builds a new one per call
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def as_text(payload: Payload, error: ErrorFactory, what: str) -> str:
    """Decode ``payload`` as strict UTF-8, raising ``error`` on failure."""
    if isinstance(payload, str):
        return payload
    try:
        return bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not valid UTF-8 (byte {exc.start})") from None


def decode(payload: Payload, error: ErrorFactory, what: str = "payload") -> JSONValue:
    """Parse ``payload`` as one strict JSON document.

    ``error`` builds the exception raised on any failure; ``what`` names the
    input in the message (e.g. ``"attribute request"``).
    """
    text = as_text(payload, error, what)
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise error(f"{what} is nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError is a ValueError; so are over-long integer literals.
        raise error(f"{what} is not valid JSON: {exc}") from None
    return cast(JSONValue, value)


def decode_object(payload: Payload, error: ErrorFactory, what: str = "payload") -> JSONObject:
    """Parse ``payload`` and require a JSON object at the top level."""
    value = decode(payload, error, what)
    if not isinstance(value, dict):
        raise error(f"{what} must be a JSON object, got {type_name(value)}")
    return value


def encode(value: JSONValue | Mapping[str, JSONValue]) -> bytes:
    """Serialise compactly as UTF-8, the form every dialect's examples use."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def type_name(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def is_int(value: object) -> TypeGuard[int]:
    """True for JSON integers; ``bool`` is an ``int`` subclass in Python but not in JSON."""
    return isinstance(value, int) and not isinstance(value, bool)
