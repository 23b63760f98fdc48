"""Whether the hub can serve: what ``/readyz`` tells a load balancer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import text

from otahub.hub.store.database import Database

DATABASE_TIMEOUT_S = 2.0


class Health:
    """The hub's listeners register a check each once they are up."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._listeners: dict[str, Callable[[], bool]] = {}

    def listener(self, name: str, is_up: Callable[[], bool]) -> None:
        self._listeners[name] = is_up

    def forget_listeners(self) -> None:
        """The hub stops: it is no longer ready, whatever is still open."""
        self._listeners.clear()

    async def problems(self) -> list[str]:
        """What keeps the hub from serving; empty when it is ready."""
        found = [f"{name} is not listening" for name, up in self._listeners.items() if not up()]
        if not self._listeners:
            found.append("the hub is starting or stopping")
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT_S):
                async with self._db.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "not ready", with its reason
            found.append(f"the database does not answer: {type(exc).__name__}: {exc}")
        return found
