"""Shared JSON helpers: every malformed input becomes the caller's error type."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otahub.protocols import _json


class Boom(Exception):
    pass


def test_decode_valid() -> None:
    assert _json.decode(b'{"a":[1,2.5,"x",true,null]}', Boom) == {"a": [1, 2.5, "x", True, None]}
    assert _json.decode("3", Boom) == 3
    assert _json.decode(memoryview(b"[]"), Boom) == []


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b"NaN", "not valid JSON"),
        (b'{"a": Infinity}', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"9" * 5000, "not valid JSON"),
        (b"{} {}", "not valid JSON"),
    ],
)
def test_decode_errors_are_typed(payload: bytes, fragment: str) -> None:
    with pytest.raises(Boom, match=fragment):
        _json.decode(payload, Boom, "thing")


def test_decode_object_requires_object() -> None:
    assert _json.decode_object(b'{"k":1}', Boom) == {"k": 1}
    with pytest.raises(Boom, match="thing must be a JSON object, got array"):
        _json.decode_object(b"[1]", Boom, "thing")


def test_encode_is_compact_utf8() -> None:
    assert _json.encode({"a": "é", "b": [1, None]}) == '{"a":"é","b":[1,null]}'.encode()


def test_type_names() -> None:
    names = [_json.type_name(v) for v in (None, True, 1, 1.5, "s", [], {})]
    assert names == ["null", "boolean", "number", "number", "string", "array", "object"]
    assert _json.is_int(3) and not _json.is_int(True) and not _json.is_int(3.0)


@given(st.binary())
def test_decode_never_raises_anything_else(payload: bytes) -> None:
    with contextlib.suppress(Boom):
        _json.decode(payload, Boom)
