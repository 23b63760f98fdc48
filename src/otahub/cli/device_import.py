"""``otahub device import``: the rows of a CSV or JSON Lines file of devices.

The file is checked and sent as one batch: the hub registers every device or
none. Rows the CLI cannot read (bad JSON, a bad ``labels`` cell) are reported
together with the rows the hub refuses, each with its line in the file.
"""

from __future__ import annotations

from typing import Any

from otahub.cli.row_file import RowShape, flag


def _csv_row(cells: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, raw in cells.items():
        # credentials and the certificate keep their text; a blank cell is no value
        value = raw if column in ("password", "certificate") else raw.strip()
        if not value.strip():
            continue
        if column == "gateway":
            row[column] = flag(column, value)
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


DEVICE_ROWS = RowShape(
    what="a device",
    columns=(
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
    ),
    required=("name", "dialect"),
    key="name",
    convert=_csv_row,
)
