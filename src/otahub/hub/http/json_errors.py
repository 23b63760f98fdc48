"""Where in a JSON body a syntax error is: the member's name, not a byte offset.

The JSON parser reports a character offset; a person fixing the request
wants "title" (the member whose value is broken) and a line and column.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Frame:
    is_object: bool
    key: str | None = None  # the member being read (objects)
    index: int = 0  # the element being read (arrays)
    expecting_key: bool = True


def member_at(text: str, offset: int) -> str:
    """The dotted path of the member being read at ``offset`` (``items.2.name``);
    empty outside any member."""
    stack: list[_Frame] = []
    i, end = 0, min(offset, len(text))
    while i < end:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if stack and stack[-1].is_object and stack[-1].expecting_key:
                stack[-1].key = text[i + 1 : j]
            i = j + 1
            continue
        if ch == "{":
            stack.append(_Frame(is_object=True))
        elif ch == "[":
            stack.append(_Frame(is_object=False))
        elif ch in "}]" and stack:
            stack.pop()
        elif ch == ":" and stack and stack[-1].is_object:
            stack[-1].expecting_key = False
        elif ch == "," and stack:
            frame = stack[-1]
            if frame.is_object:
                frame.key, frame.expecting_key = None, True
            else:
                frame.index += 1
        i += 1
    path = [
        frame.key if frame.is_object else str(frame.index)
        for frame in stack
        if not frame.is_object or frame.key is not None
    ]
    return ".".join(p for p in path if p is not None)


def line_and_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1
