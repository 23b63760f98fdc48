"""The schema, migrations and engine settings on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, delete, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from otahub.hub.store.database import Database, alembic_config, normalize_url, sqlite_url
from otahub.hub.store.models import (
    Base,
    Device,
    FirmwarePackage,
    TypeAssignment,
    Update,
    UpdateTransition,
)


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
        assert version == "0003"
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


async def _add_one_of_each(db: Database, n: int) -> dict[str, int]:
    """A device, package, update, transition and type assignment; their ids by table."""
    async with db.session() as s, s.begin():
        device = Device(name=f"d{n}", dialect="thin-edge")
        package = _package(version=str(n))
        s.add_all([device, package])
        await s.flush()
        update = _update(device, package, "failed")
        assignment = TypeAssignment(device_type=f"t{n}", kind="firmware", package_id=package.id)
        s.add_all([update, assignment])
        await s.flush()
        step = UpdateTransition(update_id=update.id, to_state="failed", source="test")
        s.add(step)
        await s.flush()
        return {
            "devices": device.id,
            "firmware_packages": package.id,
            "updates": update.id,
            "update_transitions": step.id,
            "type_assignments": assignment.id,
        }


async def _delete_newest(db: Database) -> None:
    """Delete the rows with the highest ids (the device's delete cascades to its updates)."""
    async with db.session() as s, s.begin():
        for model in (TypeAssignment, UpdateTransition, Update, Device, FirmwarePackage):
            newest = await s.scalar(select(func.max(model.id)))
            await s.execute(delete(model).where(model.id == newest))


async def test_ids_are_never_reused_after_deleting_the_highest_and_reopening(
    database_url: str,
) -> None:
    used: dict[str, set[int]] = {table: set() for table in Base.metadata.tables}
    used.pop("alembic_version", None)
    for round_ in range(3):
        db = Database(database_url)  # reopened each round: nothing lives only in memory
        try:
            await db.migrate()
            for n in range(2):
                ids = await _add_one_of_each(db, 10 * round_ + n)
                for table, new_id in ids.items():
                    assert new_id not in used[table], (table, new_id, sorted(used[table]))
                    assert new_id > max(used[table], default=0), (table, new_id)
                    used[table].add(new_id)
            await _delete_newest(db)
        finally:
            await db.close()
    assert all(len(ids) == 6 for ids in used.values()), used


def _upgrade_to(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


async def test_migration_to_never_reused_ids_keeps_every_row_on_sqlite(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path))
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0002")
        async with db.session() as s, s.begin():
            await s.execute(
                text(
                    "INSERT INTO devices (id, name, dialect, online, created_at, dialect_state) "
                    "VALUES (1, 'd1', 'thin-edge', 0, '2026-01-01', '{\"a\": 1}'), "
                    "(2, 'd2', 'enos', 0, '2026-01-01', '{}')"
                )
            )
            s.add(_package())
            await s.flush()
            await s.execute(
                text(
                    "INSERT INTO updates (id, device_id, package_id, title, version, kind, "
                    "state, timeout_s, created_at, updated_at, mode, force, driver_state) VALUES "
                    "(7, 1, 1, 'fw', '1', 'firmware', 'downloading', 60, '2026-01-01', "
                    "'2026-01-01', 'push', 0, '{\"cmd_id\": \"x\"}')"
                )
            )
            await s.execute(
                text(
                    "INSERT INTO update_transitions (update_id, to_state, source, at) "
                    "VALUES (7, 'pending', 'api', '2026-01-01')"
                )
            )
        await db.migrate()
        async with db.engine.connect() as conn:
            tables = {
                name: sql
                for name, sql in (
                    await conn.execute(
                        text("SELECT name, sql FROM sqlite_master WHERE type='table'")
                    )
                ).all()
            }
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        for table in ("devices", "firmware_packages", "updates", "update_transitions"):
            assert "AUTOINCREMENT" in tables[table], tables[table]
        async with db.session() as s:
            devices = (await s.scalars(select(Device).order_by(Device.id))).all()
            assert [(d.id, d.name, d.dialect_state) for d in devices] == [
                (1, "d1", {"a": 1}),
                (2, "d2", {}),
            ]
            update = await s.get(Update, 7)
            assert update is not None and update.driver_state == {"cmd_id": "x"}
            steps = (await s.scalars(select(UpdateTransition))).all()
            assert [(t.update_id, t.to_state) for t in steps] == [(7, "pending")]
        # The rebuilt tables keep their constraints: one active update per device and kind,
        # and a device's updates go with it.
        async with db.session() as s:
            s.add(
                Update(
                    device_id=1,
                    package_id=1,
                    title="fw",
                    version="1",
                    kind="firmware",
                    state="pending",
                    timeout_s=60.0,
                )
            )
            with pytest.raises(IntegrityError):
                await s.commit()
        async with db.session() as s, s.begin():
            await s.execute(delete(Device).where(Device.id == 2))
            await s.execute(delete(Device).where(Device.id == 1))
        async with db.session() as s:
            assert await s.scalar(select(func.count()).select_from(Update)) == 0
            new = Device(name="d3", dialect="thin-edge")
            s.add(new)
            await s.commit()
            assert new.id == 3  # not 1: the deleted ids stay used
    finally:
        await db.close()
