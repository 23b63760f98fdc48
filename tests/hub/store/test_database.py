"""The schema, migrations and engine settings on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from otahub.hub.store.database import Database, normalize_url, sqlite_url
from otahub.hub.store.models import Device, FirmwarePackage, Update


async def test_migrations_create_every_table_and_are_idempotent(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.migrate()
        await db.migrate()  # a second start finds nothing to do
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        assert {
            "firmware_packages",
            "devices",
            "updates",
            "update_transitions",
            "type_assignments",
        } <= tables
        assert version == "0002"
    finally:
        await db.close()


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path))
    try:
        await db.migrate()
        async with db.engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
        assert mode == "wal"
        assert fks == 1
        assert (tmp_path / "otahub.db").exists()
    finally:
        await db.close()


def _package(title: str = "fw", version: str = "1") -> FirmwarePackage:
    return FirmwarePackage(
        title=title,
        version=version,
        kind="firmware",
        content_type="application/octet-stream",
        size=1,
        sha256="0" * 64,
        md5="0" * 32,
        sha384="0" * 96,
        sha512="0" * 128,
        crc32="0" * 8,
        murmur3_32="0" * 8,
        murmur3_128="0" * 32,
    )


def _update(device: Device, package: FirmwarePackage, state: str) -> Update:
    return Update(
        device_id=device.id,
        package_id=package.id,
        title=package.title,
        version=package.version,
        kind="firmware",
        state=state,
        timeout_s=60.0,
    )


async def test_database_allows_one_active_update_per_device_and_kind(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.migrate()
        async with db.session() as s:
            device = Device(name="d1", dialect="thin-edge")
            package = _package()
            s.add_all([device, package])
            await s.flush()
            s.add(_update(device, package, "succeeded"))
            s.add(_update(device, package, "failed"))  # finished ones do not count
            s.add(_update(device, package, "downloading"))
            await s.commit()
        async with db.session() as s:
            s.add(_update(device, package, "pending"))
            with pytest.raises(IntegrityError):
                await s.commit()
    finally:
        await db.close()


async def test_unique_title_version_and_utc_timestamps(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.migrate()
        at = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
        async with db.session() as s:
            row = _package()
            row.created_at = at
            s.add(row)
            await s.commit()
        async with db.session() as s:
            stored = await s.scalar(select(FirmwarePackage))
            assert stored is not None
            assert stored.created_at == at
            assert stored.created_at.tzinfo is not None
            s.add(_package())
            with pytest.raises(IntegrityError):
                await s.commit()
    finally:
        await db.close()


def test_normalize_url() -> None:
    assert normalize_url("postgresql://u:p@h:5/db") == "postgresql+asyncpg://u:p@h:5/db"
    assert normalize_url("sqlite:////x/y.db") == "sqlite+aiosqlite:////x/y.db"
    with pytest.raises(ValueError, match="unsupported database URL scheme"):
        normalize_url("mysql://h/db")
