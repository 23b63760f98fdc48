"""``otahub update start-many``: read a CSV or JSON Lines file of updates to start.

Each row is an update as ``otahub update start`` takes it (device, title,
version; mode, force, timeout optional). Rows the CLI cannot read are
reported with their line; the hub answers each of the others alone.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Columns (CSV) and keys (JSON Lines) an update row may have.
COLUMNS = ("device", "title", "version", "mode", "force", "timeout")
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0", ""}


class UpdateFileError(Exception):
    """The file as a whole cannot be read (format, header)."""


@dataclass
class UpdateFile:
    """The rows read from a file, each with its line, and the lines refused while reading."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the line each row is on
    refused: list[tuple[int, str | None, str]] = field(default_factory=list)  # line, device, why


def read_update_file(path: Path) -> UpdateFile:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's BOM is no column name
    except UnicodeDecodeError as exc:
        raise UpdateFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(text)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(text)
    raise UpdateFileError(f"{path}: give a .csv or .jsonl file")


def _read_jsonl(text: str) -> UpdateFile:
    found = UpdateFile()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            found.refused.append((number, None, f"not JSON: {exc}"))
            continue
        if not isinstance(row, dict):
            found.refused.append((number, None, "a line holds one JSON object (an update)"))
            continue
        found.rows.append(row)
        found.lines.append(number)
    return found


def _read_csv(text: str) -> UpdateFile:
    found = UpdateFile()
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return found
    if unknown := [h for h in header if h not in COLUMNS]:
        raise UpdateFileError(
            f"line 1: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"the columns are {', '.join(COLUMNS)}"
        )
    if missing := [c for c in ("device", "title", "version") if c not in header]:
        raise UpdateFileError(f"line 1: no {' or '.join(missing)} column")
    if len(set(header)) != len(header):
        raise UpdateFileError("line 1: a column is named twice")
    start = reader.line_num + 1
    for cells in reader:
        number, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        device = dict(zip(header, cells, strict=False)).get("device", "").strip() or None
        if len(cells) > len(header):
            found.refused.append(
                (number, device, f"{len(cells)} cells, the header has {len(header)}")
            )
            continue
        try:
            row = _csv_row(dict(zip(header, cells, strict=False)))
        except ValueError as exc:
            found.refused.append((number, device, str(exc)))
            continue
        found.rows.append(row)
        found.lines.append(number)
    return found


def _csv_row(cells: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, raw in cells.items():
        value = raw.strip()
        if not value:
            continue
        if column == "force":
            if value.lower() not in _TRUE | _FALSE:
                raise ValueError(f"force: true or false, not {value!r}")
            row[column] = value.lower() in _TRUE
        elif column == "timeout":
            try:
                row[column] = float(value)
            except ValueError:
                raise ValueError(f"timeout: seconds, not {value!r}") from None
        else:
            row[column] = value
    return row
