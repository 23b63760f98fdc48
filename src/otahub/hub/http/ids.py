"""The one type for a row id in a route: 422 outside the database's range.

Every route that takes an id uses ``RowId``, so a huge, negative or
non-numeric id is refused by validation before any lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from otahub.hub.store.ids import MAX_ID, MIN_ID

_DESCRIPTION = f"a row id, {MIN_ID} to {MAX_ID}"

RowId = Annotated[int, Path(ge=MIN_ID, le=MAX_ID, description=_DESCRIPTION)]
