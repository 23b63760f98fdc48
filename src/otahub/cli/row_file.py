"""A CSV or JSON Lines file of rows to send to the hub as one batch.

``otahub device import`` and ``otahub update start-many`` read the same
shapes: a ``.csv`` file with a header row naming its columns, or a
``.jsonl`` (``.ndjson``) file with one JSON object a line. Rows the CLI
cannot read are kept with their line and why, to be listed with the rows
the hub refuses; a file that cannot be read as a whole is an error.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

# the FILE argument of the commands that read one
RowFileArgument = Annotated[
    Path,
    typer.Argument(
        help="A .csv file (a header row naming the columns) or a .jsonl file (one JSON "
        "object a line).",
        exists=True,
        dir_okay=False,
        show_default=False,
    ),
]

TRUE = frozenset({"true", "yes", "1"})
FALSE = frozenset({"false", "no", "0", ""})


class RowFileError(Exception):
    """The file as a whole cannot be read (format, header)."""


@dataclass
class RowFile:
    """The rows read from a file, each with its line, and the lines refused while reading."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the line each row starts on
    refused: list[tuple[int, str | None, str]] = field(default_factory=list)  # line, key, why


@dataclass(frozen=True)
class RowShape:
    """What a file's rows hold."""

    what: str  # one row is ... ("a device")
    columns: tuple[str, ...]  # the columns (CSV) and keys (JSON Lines) a row may have
    required: tuple[str, ...]  # the columns a CSV header must name
    key: str  # the column that names a row in a refusal
    # a CSV row's cells (by column) as the row sent; ValueError refuses the row
    convert: Callable[[dict[str, str]], dict[str, Any]]


def read_row_file(path: Path, shape: RowShape) -> RowFile:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's BOM is no column name
    except UnicodeDecodeError as exc:
        raise RowFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(text, shape)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(text, shape)
    raise RowFileError(f"{path}: give a .csv or .jsonl file")


def flag(column: str, value: str) -> bool:
    """A yes/no cell: true, yes, 1 or false, no, 0 (any case)."""
    if value.lower() not in TRUE | FALSE:
        raise ValueError(f"{column}: true or false, not {value!r}")
    return value.lower() in TRUE


def _read_jsonl(text: str, shape: RowShape) -> RowFile:
    found = RowFile()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            found.refused.append((number, None, f"not JSON: {exc}"))
            continue
        if not isinstance(row, dict):
            found.refused.append((number, None, f"a line holds one JSON object ({shape.what})"))
            continue
        found.rows.append(row)
        found.lines.append(number)
    return found


def _read_csv(text: str, shape: RowShape) -> RowFile:
    found = RowFile()
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return found
    if unknown := [h for h in header if h not in shape.columns]:
        raise RowFileError(
            f"line 1: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"the columns are {', '.join(shape.columns)}"
        )
    if missing := [c for c in shape.required if c not in header]:
        raise RowFileError(f"line 1: no {' or '.join(missing)} column")
    if len(set(header)) != len(header):
        raise RowFileError("line 1: a column is named twice")
    start = reader.line_num + 1
    for cells in reader:
        number, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        by_column = dict(zip(header, cells, strict=False))
        key = by_column.get(shape.key, "").strip() or None
        if len(cells) > len(header):
            found.refused.append((number, key, f"{len(cells)} cells, the header has {len(header)}"))
            continue
        try:
            row = shape.convert(by_column)
        except ValueError as exc:
            found.refused.append((number, key, str(exc)))
            continue
        found.rows.append(row)
        found.lines.append(number)
    return found
