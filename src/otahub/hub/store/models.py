"""The hub's tables. Schema changes go through the Alembic migrations beside this module."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Ids are never handed out twice, also after the row with the highest id was
# deleted: a late message naming a deleted device's update must not find a new
# one. SQLite needs AUTOINCREMENT for that (plain rowids reuse the highest free
# id); PostgreSQL's sequences never go back.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}

# Update states that end an update; every other state counts as active.
TERMINAL_STATES = ("succeeded", "failed", "canceled")
_ACTIVE_WHERE = text("state NOT IN ('succeeded', 'failed', 'canceled')")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # Stable constraint names, so migrations can refer to them on every backend.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class FirmwarePackage(Base):
    __tablename__ = "firmware_packages"
    __table_args__ = (UniqueConstraint("title", "version"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # "firmware" or "software"
    device_type: Mapped[str | None] = mapped_column(String(255))
    filename: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    source_url: Mapped[str | None] = mapped_column(Text)  # set when registered by URL
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # also the blob key
    md5: Mapped[str] = mapped_column(String(32))
    sha384: Mapped[str] = mapped_column(String(96))
    sha512: Mapped[str] = mapped_column(String(128))
    crc32: Mapped[str] = mapped_column(String(8))
    murmur3_32: Mapped[str] = mapped_column(String(8))
    murmur3_128: Mapped[str] = mapped_column(String(32))
    # The algorithm ThingsBoard devices are told to verify with (fw_checksum_algorithm),
    # chosen per package as ThingsBoard does; a device's own setting overrides it.
    checksum_algorithm: Mapped[str] = mapped_column(
        String(16), default="SHA256", server_default="SHA256"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("enos_product_key", "enos_device_key"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    dialect: Mapped[str] = mapped_column(String(32))
    device_type: Mapped[str | None] = mapped_column(String(255))
    tb_token: Mapped[str | None] = mapped_column(String(255), unique=True)
    enos_product_key: Mapped[str | None] = mapped_column(String(255))
    enos_device_key: Mapped[str | None] = mapped_column(String(255))
    enos_device_secret: Mapped[str | None] = mapped_column(String(255))
    # thin-edge / tedge-legacy MQTT password (user name = device name), argon2 hash
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # a thin-edge gateway: may register children and act for them
    gateway: Mapped[bool] = mapped_column(Boolean, default=False)
    # the gateway that registered this thin-edge child (its name)
    owner: Mapped[str | None] = mapped_column(String(255))
    # X.509 client certificate (any dialect): SHA-256 of its DER form, and its subject CN
    cert_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    cert_cn: Mapped[str | None] = mapped_column(String(255))
    current_fw_title: Mapped[str | None] = mapped_column(String(255))
    current_fw_version: Mapped[str | None] = mapped_column(String(255))
    current_sw_title: Mapped[str | None] = mapped_column(String(255))
    current_sw_version: Mapped[str | None] = mapped_column(String(255))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # what the device's dialect driver remembers about it (registration, client
    # attributes, capabilities); JSON so a driver needs no schema of its own
    dialect_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # operator-given key=value pairs (site, ring, ...) that groups and rollouts select by
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class Update(Base):
    __tablename__ = "updates"
    __table_args__ = (
        # At most one active update per device and kind, enforced by the database
        # itself so that two concurrent requests cannot both win.
        Index(
            "uq_updates_active_device_kind",
            "device_id",
            "kind",
            unique=True,
            sqlite_where=_ACTIVE_WHERE,
            postgresql_where=_ACTIVE_WHERE,
        ),
        Index("ix_updates_state_deadline", "state", "deadline_at"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The history outlives the device: deleting a device (which cancels its active
    # updates first) keeps its updates, with the name and dialect it had.
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )
    device_name: Mapped[str] = mapped_column(String(255))
    dialect: Mapped[str] = mapped_column(String(32))
    # Finished updates outlive their package; title and version stay for the history.
    package_id: Mapped[int | None] = mapped_column(
        ForeignKey("firmware_packages.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(255))
    # what the device reported running when the update was created (None: nothing)
    from_version: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # copied from the package for the index
    state: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(String(64))
    timeout_s: Mapped[float] = mapped_column()
    # "push": the hub sends the update; "on-request": offered when the device asks
    mode: Mapped[str] = mapped_column(String(16), default="push")
    # start even where the device has not announced it can take updates
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    # the driver's bookkeeping for this update (command id, attempt, ...)
    driver_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the hub instance that sends the update's commands (several hubs, one database)
    claimed_by: Mapped[str | None] = mapped_column(String(255))

    device: Mapped[Device | None] = relationship(lazy="raise")
    package: Mapped[FirmwarePackage | None] = relationship(lazy="raise")
    transitions: Mapped[list[UpdateTransition]] = relationship(
        lazy="raise", order_by="UpdateTransition.id", cascade="all, delete-orphan"
    )


class UpdateTransition(Base):
    """The audit trail: one row per state change (or progress report) of an update."""

    __tablename__ = "update_transitions"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    update_id: Mapped[int] = mapped_column(ForeignKey("updates.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))  # "api", "timeout", "driver:<dialect>", ...
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TypeAssignment(Base):
    """A package assigned to every device of a type (ThingsBoard's device profile).

    A device's own update takes precedence over its type's assignment.
    """

    __tablename__ = "type_assignments"
    __table_args__ = (UniqueConstraint("device_type", "kind"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_type: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    package_id: Mapped[int] = mapped_column(
        ForeignKey("firmware_packages.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeviceGroup(Base):
    """A named set of devices: static (its members listed) or dynamic (a filter)."""

    __tablename__ = "device_groups"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # canonical filter expression of a dynamic group; None for a static group
    filter: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeviceGroupMember(Base):
    """A device listed in a static group; goes with the group or the device."""

    __tablename__ = "device_group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("device_groups.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Rollout(Base):
    """One release for many devices, in stages, driven by the rollout engine.

    Everything the engine decides from lives here and in ``rollout_devices``,
    so a hub that restarts (or another instance taking over) goes on where
    the last one stopped.
    """

    __tablename__ = "rollouts"
    __table_args__ = (Index("ix_rollouts_state", "state"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(255))
    package_id: Mapped[int | None] = mapped_column(
        ForeignKey("firmware_packages.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # the package's: firmware or software
    # the targets: a group's name or a filter expression (exactly one of them)
    group_name: Mapped[str | None] = mapped_column(String(255))
    filter_expr: Mapped[str | None] = mapped_column(Text)
    # cumulative stage sizes as given: "5", "10%", ...
    stages: Mapped[list[str]] = mapped_column(JSON)
    success_threshold: Mapped[float] = mapped_column()  # percent
    error_threshold: Mapped[float] = mapped_column()  # percent
    min_finished: Mapped[int] = mapped_column(Integer)
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    rate_per_s: Mapped[float | None] = mapped_column()
    ramp: Mapped[float | None] = mapped_column()
    window_cron: Mapped[str | None] = mapped_column(String(255))
    window_duration_s: Mapped[float | None] = mapped_column()
    timezone: Mapped[str | None] = mapped_column(String(64))
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retries: Mapped[int] = mapped_column(Integer)
    update_timeout_s: Mapped[float | None] = mapped_column()
    dynamic: Mapped[bool] = mapped_column(Boolean)
    mode: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(BigInteger)
    # created, scheduled, running, paused, finished, canceled
    state: Mapped[str] = mapped_column(String(16))
    pause_reason: Mapped[str | None] = mapped_column(Text)
    stage: Mapped[int] = mapped_column(Integer, default=0)  # the stage now started
    rate_factor: Mapped[float] = mapped_column(default=1.0)  # the ramp reached so far
    window_open: Mapped[bool | None] = mapped_column(Boolean)  # as last seen, for its events
    # the brake counts devices that finished from here on (set by resume and retry)
    brake_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the hub instance driving the rollout, until its lease runs out
    owner: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RolloutDevice(Base):
    """One target device of a rollout: its place in the order, its stage and its progress."""

    __tablename__ = "rollout_devices"
    __table_args__ = (
        UniqueConstraint("rollout_id", "device_id"),
        Index("ix_rollout_devices_rollout_id_state_position", "rollout_id", "state", "position"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"))
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )
    device_name: Mapped[str] = mapped_column(String(255))
    position: Mapped[int] = mapped_column(Integer)  # the seeded shuffle's order
    stage: Mapped[int] = mapped_column(Integer)
    # waiting, started, succeeded, failed, skipped, canceled
    state: Mapped[str] = mapped_column(String(16))
    update_id: Mapped[int | None] = mapped_column(
        ForeignKey("updates.id", ondelete="SET NULL"), index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RolloutEvent(Base):
    """A rollout's audit trail: every decision of the engine and every operator action."""

    __tablename__ = "rollout_events"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    numbers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class HubSecret(Base):
    """A secret every hub instance on the database shares (the download link key)."""

    __tablename__ = "hub_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
