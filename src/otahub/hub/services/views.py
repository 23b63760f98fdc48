"""Immutable snapshots of stored rows: what services return and events carry.

Handing out these instead of ORM objects keeps sessions inside the services and
lets subscribers keep an event as long as they like.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from otahub.hub.store.models import (
    Device,
    DeviceGroup,
    FirmwarePackage,
    Update,
    UpdateTransition,
)
from otahub.protocols.checksums import Algorithm


@dataclass(frozen=True, slots=True)
class PackageView:
    id: int
    title: str
    version: str
    kind: str
    device_type: str | None
    filename: str | None
    content_type: str
    source_url: str | None
    size: int
    checksums: dict[Algorithm, str]
    created_at: datetime
    # what ThingsBoard devices are told to verify with, unless the device overrides it
    checksum_algorithm: Algorithm = Algorithm.SHA256

    @property
    def sha256(self) -> str:
        return self.checksums[Algorithm.SHA256]

    @classmethod
    def of(cls, row: FirmwarePackage) -> PackageView:
        return cls(
            id=row.id,
            title=row.title,
            version=row.version,
            kind=row.kind,
            device_type=row.device_type,
            filename=row.filename,
            content_type=row.content_type,
            source_url=row.source_url,
            size=row.size,
            checksums={
                Algorithm.MD5: row.md5,
                Algorithm.SHA256: row.sha256,
                Algorithm.SHA384: row.sha384,
                Algorithm.SHA512: row.sha512,
                Algorithm.CRC32: row.crc32,
                Algorithm.MURMUR3_32: row.murmur3_32,
                Algorithm.MURMUR3_128: row.murmur3_128,
            },
            created_at=row.created_at,
            checksum_algorithm=Algorithm(row.checksum_algorithm),
        )


@dataclass(frozen=True, slots=True)
class DeviceView:
    id: int
    name: str
    dialect: str
    device_type: str | None
    tb_token: str | None
    enos_product_key: str | None
    enos_device_key: str | None
    enos_device_secret: str | None
    current_fw_title: str | None
    current_fw_version: str | None
    current_sw_title: str | None
    current_sw_version: str | None
    last_seen_at: datetime | None
    online: bool
    created_at: datetime
    dialect_state: dict[str, Any] = field(default_factory=dict)
    # argon2 hash of a thin-edge / tedge-legacy device's MQTT password
    password_hash: str | None = None
    gateway: bool = False
    owner: str | None = None  # the gateway that registered this child
    # X.509 client certificate: SHA-256 fingerprint (hex) and subject CN
    cert_sha256: str | None = None
    cert_cn: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None

    @property
    def has_certificate(self) -> bool:
        return self.cert_sha256 is not None

    @classmethod
    def of(cls, row: Device) -> DeviceView:
        return cls(
            id=row.id,
            name=row.name,
            dialect=row.dialect,
            device_type=row.device_type,
            tb_token=row.tb_token,
            enos_product_key=row.enos_product_key,
            enos_device_key=row.enos_device_key,
            enos_device_secret=row.enos_device_secret,
            current_fw_title=row.current_fw_title,
            current_fw_version=row.current_fw_version,
            current_sw_title=row.current_sw_title,
            current_sw_version=row.current_sw_version,
            last_seen_at=row.last_seen_at,
            online=row.online,
            created_at=row.created_at,
            dialect_state=dict(row.dialect_state or {}),
            password_hash=row.password_hash,
            gateway=bool(row.gateway),
            owner=row.owner,
            cert_sha256=row.cert_sha256,
            cert_cn=row.cert_cn,
            labels=dict(row.labels or {}),
        )


@dataclass(frozen=True, slots=True)
class ReportedState:
    """What a device's reports set (its versions, online, last seen): the answer
    to a report.

    The hub remembers this, not the device's whole view, for every device that
    reported lately, so it stays a few fields: a fleet keeps one per device.
    """

    name: str
    current_fw_title: str | None
    current_fw_version: str | None
    current_sw_title: str | None
    current_sw_version: str | None
    online: bool
    last_seen_at: datetime | None

    @classmethod
    def of(cls, view: DeviceView) -> ReportedState:
        # every field is the view's field of the same name
        return cls(**{f.name: getattr(view, f.name) for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class GroupView:
    id: int
    name: str
    # canonical filter expression of a dynamic group; None: a static group (listed devices)
    filter: str | None
    created_at: datetime

    @property
    def dynamic(self) -> bool:
        return self.filter is not None

    @classmethod
    def of(cls, row: DeviceGroup) -> GroupView:
        return cls(id=row.id, name=row.name, filter=row.filter, created_at=row.created_at)


@dataclass(frozen=True, slots=True)
class TransitionView:
    from_state: str | None
    to_state: str
    progress: int | None
    reason: str | None
    code: str | None
    source: str
    at: datetime

    @classmethod
    def of(cls, row: UpdateTransition) -> TransitionView:
        return cls(
            from_state=row.from_state,
            to_state=row.to_state,
            progress=row.progress,
            reason=row.reason,
            code=row.code,
            source=row.source,
            at=row.at,
        )


@dataclass(frozen=True, slots=True)
class UpdateView:
    id: int
    device_id: int | None  # None once the device was deleted (its history stays)
    device: str
    dialect: str
    package_id: int | None  # None once the package of a finished update was deleted
    title: str
    version: str
    kind: str
    state: str
    progress: int | None
    reason: str | None
    code: str | None
    timeout_s: float
    deadline_at: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    transitions: tuple[TransitionView, ...] | None = None  # only when asked for
    mode: str = "push"
    force: bool = False
    driver_state: dict[str, Any] = field(default_factory=dict)
    from_version: str | None = None  # what the device ran when the update was created

    @classmethod
    def of(cls, row: Update, transitions: list[UpdateTransition] | None = None) -> UpdateView:
        return cls(
            id=row.id,
            device_id=row.device_id,
            device=row.device_name,
            dialect=row.dialect,
            package_id=row.package_id,
            title=row.title,
            version=row.version,
            kind=row.kind,
            state=row.state,
            progress=row.progress,
            reason=row.reason,
            code=row.code,
            timeout_s=row.timeout_s,
            deadline_at=row.deadline_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            mode=row.mode or "push",
            force=bool(row.force),
            driver_state=dict(row.driver_state or {}),
            from_version=row.from_version,
            transitions=None
            if transitions is None
            else tuple(TransitionView.of(t) for t in transitions),
        )
