"""Alembic environment: runs on the connection the hub hands in (see database.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from otahub.hub.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite needs table rebuilds for most ALTERs
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through Database.migrate, which passes a connection")
_run(connection)
