"""``otahub device import``: read a CSV or JSON Lines file of devices, register them all.

The file is checked and sent as one batch: the hub registers every device or
none. Rows the CLI cannot read (bad JSON, a bad ``labels`` cell) are reported
together with the rows the hub refuses, each with its line in the file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Columns (CSV) and keys (JSON Lines) a device row may have.
COLUMNS = (
    "name",
    "dialect",
    "token",
    "product_key",
    "device_key",
    "secret",
    "password",
    "device_type",
    "gateway",
    "labels",
    "certificate",
)
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0", ""}


class ImportFileError(Exception):
    """The file as a whole cannot be read (format, header)."""


@dataclass
class ImportFile:
    """The rows read from a file, each with its line, and the lines refused while reading."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the line each row starts on
    refused: list[tuple[int, str | None, str]] = field(default_factory=list)  # line, name, why


def read_import_file(path: Path) -> ImportFile:
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's BOM is no column name
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if suffix == ".csv":
        return _read_csv(text)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(text)
    raise ImportFileError(f"{path}: give a .csv or .jsonl file")


def _read_jsonl(text: str) -> ImportFile:
    found = ImportFile()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            found.refused.append((number, None, f"not JSON: {exc}"))
            continue
        if not isinstance(row, dict):
            found.refused.append((number, None, "a line holds one JSON object (a device)"))
            continue
        found.rows.append(row)
        found.lines.append(number)
    return found


def _read_csv(text: str) -> ImportFile:
    found = ImportFile()
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return found
    if unknown := [h for h in header if h not in COLUMNS]:
        raise ImportFileError(
            f"line 1: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"the columns are {', '.join(COLUMNS)}"
        )
    if missing := [c for c in ("name", "dialect") if c not in header]:
        raise ImportFileError(f"line 1: no {' or '.join(missing)} column")
    if len(set(header)) != len(header):
        raise ImportFileError("line 1: a column is named twice")
    start = reader.line_num + 1
    for cells in reader:
        number, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        name = _row_name(cells, header)
        if len(cells) > len(header):
            found.refused.append(
                (number, name, f"{len(cells)} cells, the header has {len(header)}")
            )
            continue
        try:
            row = _csv_row(dict(zip(header, cells, strict=False)))
        except ValueError as exc:
            found.refused.append((number, name, str(exc)))
            continue
        found.rows.append(row)
        found.lines.append(number)
    return found


def _row_name(cells: list[str], header: list[str]) -> str | None:
    value = dict(zip(header, cells, strict=False)).get("name", "").strip()
    return value or None


def _csv_row(cells: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, raw in cells.items():
        # credentials and the certificate keep their text; a blank cell is no value
        value = raw if column in ("password", "certificate") else raw.strip()
        if not value.strip():
            continue
        if column == "gateway":
            flag = value.lower()
            if flag not in _TRUE | _FALSE:
                raise ValueError(f"gateway: true or false, not {value!r}")
            row[column] = flag in _TRUE
        elif column == "labels":
            row[column] = _labels(value)
        else:
            row[column] = value
    return row


def _labels(cell: str) -> dict[str, str]:
    """``k=v;k2=v2``; the hub checks keys and values."""
    labels: dict[str, str] = {}
    for part in cell.split(";"):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"labels: {part.strip()!r} is not key=value")
        if key.strip() in labels:
            raise ValueError(f"labels: {key.strip()!r} is given twice")
        labels[key.strip()] = value.strip()
    return labels
