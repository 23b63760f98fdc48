"""Ids no database row can have are not found, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from otahub.hub.core import HubCore
from otahub.hub.services.errors import NotFound


@pytest.mark.parametrize("bad", ["99999999999999999999999", "2147483648", "-1", "0"])
async def test_services_treat_impossible_ids_as_not_found(core: HubCore, bad: str) -> None:
    with pytest.raises(NotFound):
        await core.updates.get(int(bad))
    with pytest.raises(NotFound):
        await core.updates.cancel(int(bad))
    with pytest.raises(NotFound):
        await core.firmware.get(int(bad))
    with pytest.raises(NotFound):
        await core.firmware.delete(int(bad))
