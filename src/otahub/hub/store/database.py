"""Engine and sessions: SQLite (WAL) in the data dir by default, PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS = Path(__file__).with_name("migrations")


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(data_dir / 'otahub.db').resolve()}"


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``sqlite://`` URLs and pick the async drivers."""
    parsed = make_url(url)
    driver = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}.get(
        parsed.drivername, parsed.drivername
    )
    if driver == "sqlite":
        driver = "sqlite+aiosqlite"
    if driver not in ("postgresql+asyncpg", "sqlite+aiosqlite"):
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: use sqlite or postgresql"
        )
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run while a writer commits; foreign keys are off by default.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine: AsyncEngine = create_async_engine(self.url, echo=echo)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> AsyncSession:
        return self.sessions()

    async def migrate(self) -> None:
        """Bring the schema to the newest migration."""
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                # SQLite rebuilds a table to change it, dropping the old one; with
                # foreign keys on, that drop would cascade into the child tables.
                # The pragma only takes effect outside a transaction.
                await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            try:
                await conn.run_sync(_upgrade_head)
                await conn.commit()
            finally:
                if self.is_sqlite:
                    await conn.rollback()
                    await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                    await conn.commit()

    async def close(self) -> None:
        await self.engine.dispose()


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
