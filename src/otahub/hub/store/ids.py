"""Row ids: the range every supported database can store and look up.

Ids are ``INTEGER`` columns: 64-bit on SQLite but 32-bit on PostgreSQL. A
larger number cannot name a row on either, and handing one to the database
fails inside the driver (``OverflowError`` on SQLite, ``DataError`` on
PostgreSQL) instead of finding nothing, so every id from outside is checked
against this range first.
"""

from __future__ import annotations

from typing import Final

MIN_ID: Final = 1
MAX_ID: Final = 2**31 - 1  # PostgreSQL INTEGER, the narrower of the two


def is_row_id(value: int) -> bool:
    """Whether ``value`` can be the id of a stored row."""
    return MIN_ID <= value <= MAX_ID
