"""``otahub update start-many``: the rows of a CSV or JSON Lines file of updates.

Each row is an update as ``otahub update start`` takes it (device, title,
version; mode, force, timeout optional). Rows the CLI cannot read are
reported with their line; the hub answers each of the others alone.
"""

from __future__ import annotations

from typing import Any

from otahub.cli.row_file import RowShape, flag


def _csv_row(cells: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, raw in cells.items():
        value = raw.strip()
        if not value:
            continue
        if column == "force":
            row[column] = flag(column, value)
        elif column == "timeout":
            try:
                row[column] = float(value)
            except ValueError:
                raise ValueError(f"timeout: seconds, not {value!r}") from None
        else:
            row[column] = value
    return row


UPDATE_ROWS = RowShape(
    what="an update",
    columns=("device", "title", "version", "mode", "force", "timeout"),
    required=("device", "title", "version"),
    key="device",
    convert=_csv_row,
)
