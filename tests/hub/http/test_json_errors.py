"""Naming the place of a JSON syntax error."""

from __future__ import annotations

import json

import pytest

from otahub.hub.http.json_errors import line_and_column, member_at


def _offset(text: str) -> int:
    with pytest.raises(json.JSONDecodeError) as caught:
        json.loads(text)
    return caught.value.pos


@pytest.mark.parametrize(
    ("text", "member"),
    [
        ('{"title": }', "title"),
        ('{"a": 1, "b": tru}', "b"),
        ('{"outer": {"inner": [1, 2, x]}}', "outer.inner.2"),
        ('{"say \\"hi\\"": "x", "next": ]', "next"),
        ('{"done": 1,}', ""),  # between members: no member yet
        ("[1, 2", "1"),
        ("nope", ""),
    ],
)
def test_member_at_names_the_member_being_read(text: str, member: str) -> None:
    assert member_at(text, _offset(text)) == member


def test_line_and_column_count_from_one() -> None:
    text = '{\n  "a": 1,\n  "b": }'
    assert line_and_column(text, _offset(text)) == (3, 8)
