"""The schema, migrations and engine settings on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Connection, column, delete, func, insert, inspect, select, table, text
from sqlalchemy.exc import IntegrityError

from otahub.hub.store.database import Database, alembic_config, normalize_url, sqlite_url
from otahub.hub.store.models import (
    Base,
    Device,
    DeviceGroup,
    DeviceGroupMember,
    FirmwarePackage,
    Rollout,
    RolloutDevice,
    RolloutEvent,
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
            "device_groups",
            "device_group_members",
            "rollouts",
            "rollout_devices",
            "rollout_events",
            "hub_secrets",
        } <= tables
        assert version == "0013"
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
        device_name=device.name,
        dialect=device.dialect,
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
    """A device, package, update, transition, type assignment and group; their ids by table."""
    async with db.session() as s, s.begin():
        device = Device(name=f"d{n}", dialect="thin-edge")
        package = _package(version=str(n))
        s.add_all([device, package])
        await s.flush()
        update = _update(device, package, "failed")
        assignment = TypeAssignment(device_type=f"t{n}", kind="firmware", package_id=package.id)
        group = DeviceGroup(name=f"g{n}")
        s.add_all([update, assignment, group])
        await s.flush()
        s.add(DeviceGroupMember(group_id=group.id, device_id=device.id))
        step = UpdateTransition(update_id=update.id, to_state="failed", source="test")
        rollout = _rollout(f"r{n}", package)
        s.add_all([step, rollout])
        await s.flush()
        target = RolloutDevice(
            rollout_id=rollout.id,
            device_id=device.id,
            device_name=device.name,
            position=0,
            stage=0,
            state="waiting",
        )
        event = RolloutEvent(rollout_id=rollout.id, kind="created", message="test", numbers={})
        s.add_all([target, event])
        await s.flush()
        return {
            "devices": device.id,
            "firmware_packages": package.id,
            "updates": update.id,
            "update_transitions": step.id,
            "type_assignments": assignment.id,
            "device_groups": group.id,
            "rollouts": rollout.id,
            "rollout_devices": target.id,
            "rollout_events": event.id,
        }


def _rollout(name: str, package: FirmwarePackage) -> Rollout:
    return Rollout(
        name=name,
        title=package.title,
        version=package.version,
        package_id=package.id,
        kind="firmware",
        filter_expr="site=x",
        stages=["100%"],
        success_threshold=95.0,
        error_threshold=5.0,
        min_finished=10,
        retries=0,
        dynamic=False,
        mode="push",
        seed=1,
        state="created",
    )


async def _delete_newest(db: Database) -> None:
    """Delete the rows with the highest ids (the device's delete cascades to its updates)."""
    async with db.session() as s, s.begin():
        for model in (
            RolloutEvent,
            RolloutDevice,
            Rollout,
            DeviceGroup,
            TypeAssignment,
            UpdateTransition,
            Update,
            Device,
            FirmwarePackage,
        ):
            newest = await s.scalar(select(func.max(model.id)))
            await s.execute(delete(model).where(model.id == newest))


async def test_ids_are_never_reused_after_deleting_the_highest_and_reopening(
    database_url: str,
) -> None:
    used: dict[str, set[int]] = {table: set() for table in Base.metadata.tables}
    used.pop("alembic_version", None)
    used.pop("device_group_members", None)  # no id of its own
    used.pop("hub_secrets", None)  # keyed by name
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


async def test_migrations_from_0002_keep_every_row_and_stop_reusing_ids(database_url: str) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    # The tables as revision 0002 left them, with only the columns this test fills.
    devices = table(
        "devices",
        column("id", sa.Integer),
        column("name", sa.String),
        column("dialect", sa.String),
        column("online", sa.Boolean),
        column("created_at", sa.DateTime(timezone=True)),
        column("dialect_state", sa.JSON),
    )
    updates = table(
        "updates",
        *(column(name, sa.String) for name in ("title", "version", "kind", "state", "mode")),
        column("id", sa.Integer),
        column("device_id", sa.Integer),
        column("package_id", sa.Integer),
        column("timeout_s", sa.Float),
        column("force", sa.Boolean),
        column("driver_state", sa.JSON),
        column("created_at", sa.DateTime(timezone=True)),
        column("updated_at", sa.DateTime(timezone=True)),
    )
    packages = table(
        "firmware_packages",
        *(
            column(name, sa.String)
            for name in ("title", "version", "kind", "content_type", "sha256", "md5", "sha384")
        ),
        *(column(name, sa.String) for name in ("sha512", "crc32", "murmur3_32", "murmur3_128")),
        column("id", sa.Integer),
        column("size", sa.BigInteger),
        column("created_at", sa.DateTime(timezone=True)),
    )
    steps = table(
        "update_transitions",
        column("update_id", sa.Integer),
        column("to_state", sa.String),
        column("source", sa.String),
        column("at", sa.DateTime(timezone=True)),
    )
    db = Database(database_url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0002")
        async with db.engine.begin() as conn:
            ids = [
                (
                    await conn.execute(
                        insert(devices)
                        .values(
                            name=name,
                            dialect=dialect,
                            online=False,
                            created_at=at,
                            dialect_state=state,
                        )
                        .returning(devices.c.id)
                    )
                ).scalar_one()
                for name, dialect, state in (("d1", "thin-edge", {"a": 1}), ("d2", "enos", {}))
            ]
            package_id = (
                await conn.execute(
                    insert(packages)
                    .values(
                        title="fw",
                        version="1",
                        kind="firmware",
                        content_type="application/octet-stream",
                        sha256="0" * 64,
                        md5="0" * 32,
                        sha384="0" * 96,
                        sha512="0" * 128,
                        crc32="0" * 8,
                        murmur3_32="0" * 8,
                        murmur3_128="0" * 32,
                        size=1,
                        created_at=at,
                    )
                    .returning(packages.c.id)
                )
            ).scalar_one()
            update_id = (
                await conn.execute(
                    insert(updates)
                    .values(
                        device_id=ids[0],
                        package_id=package_id,
                        title="fw",
                        version="1",
                        kind="firmware",
                        state="downloading",
                        mode="push",
                        timeout_s=60.0,
                        force=False,
                        driver_state={"cmd_id": "x"},
                        created_at=at,
                        updated_at=at,
                    )
                    .returning(updates.c.id)
                )
            ).scalar_one()
            await conn.execute(
                insert(steps).values(update_id=update_id, to_state="pending", source="api", at=at)
            )
        await db.migrate()
        if db.is_sqlite:
            async with db.engine.connect() as conn:
                tables = dict(
                    (
                        await conn.execute(
                            text("SELECT name, sql FROM sqlite_master WHERE type='table'")
                        )
                    ).all()
                )
                # back on for the pooled connections after the migration
                assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            for name in ("devices", "firmware_packages", "updates", "update_transitions"):
                assert "AUTOINCREMENT" in tables[name], tables[name]
        async with db.session() as s:
            rows = (await s.scalars(select(Device).order_by(Device.id))).all()
            assert [(d.id, d.name, d.dialect_state) for d in rows] == [
                (ids[0], "d1", {"a": 1}),
                (ids[1], "d2", {}),
            ]
            update = await s.get(Update, update_id)
            assert update is not None and update.driver_state == {"cmd_id": "x"}
            # filled in from the device by 0004
            assert (update.device_name, update.dialect) == ("d1", "thin-edge")
            package = await s.get(FirmwarePackage, package_id)
            # what the hub always sent before 0005
            assert package is not None and package.checksum_algorithm == "SHA256"
            kept = (await s.scalars(select(UpdateTransition))).all()
            assert [(t.update_id, t.to_state) for t in kept] == [(update_id, "pending")]
        # The constraints hold after the rebuilds: one active update per device and kind,
        # and a device's updates outlive it.
        async with db.session() as s:
            s.add(
                Update(
                    device_id=ids[0],
                    device_name="d1",
                    dialect="thin-edge",
                    package_id=package_id,
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
            await s.execute(delete(Device).where(Device.id.in_(ids)))
        async with db.session() as s:
            assert (await s.scalars(select(Update.device_id))).all() == [None]
            new = Device(name="d3", dialect="thin-edge")
            s.add(new)
            await s.commit()
            assert new.id > max(ids)  # the deleted ids stay used
    finally:
        await db.close()


async def _migrate_to(db: Database, revision: str, *, down: bool = False) -> None:
    """As ``Database.migrate`` does it (SQLite: foreign keys off while tables are rebuilt)."""
    step = command.downgrade if down else command.upgrade
    async with db.engine.connect() as conn:
        if db.is_sqlite:
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        await conn.run_sync(lambda c: step(alembic_config(c), revision))
        await conn.commit()
        if db.is_sqlite:
            await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            await conn.commit()


async def test_devices_from_before_gateways_are_no_gateways_and_belong_to_none(
    database_url: str,
) -> None:
    devices = table(
        "devices",
        column("name", sa.String),
        column("dialect", sa.String),
        column("online", sa.Boolean),
        column("created_at", sa.DateTime(timezone=True)),
        column("dialect_state", sa.JSON),
    )
    db = Database(database_url)
    try:
        await _migrate_to(db, "0007")
        async with db.engine.begin() as conn:
            await conn.execute(
                insert(devices).values(
                    name="child01",
                    dialect="thin-edge",
                    online=False,
                    created_at=datetime(2026, 1, 1, tzinfo=UTC),
                    dialect_state={},
                )
            )
        await db.migrate()
        async with db.session() as s:
            device = await s.scalar(select(Device))
            assert device is not None and (device.gateway, device.owner) == (False, None)
        await _migrate_to(db, "0007", down=True)
        async with db.engine.connect() as conn:
            names = (await conn.execute(text("SELECT name FROM devices"))).scalars().all()
            assert names == ["child01"]
    finally:
        await db.close()
