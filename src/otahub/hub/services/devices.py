"""The device registry: names, dialects and each dialect's credentials."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.device_auth.certificates import CertificateError, CertificateId, identify_pem
from otahub.hub.device_auth.password_rules import check_password_text
from otahub.hub.device_auth.passwords import hash_password_async
from otahub.hub.services.device_batch import (
    MAX_BATCH,
    BatchRefused,
    Refusal,
    check_batch,
    insert_batch,
)
from otahub.hub.services.errors import Conflict, Invalid, NotFound
from otahub.hub.services.events import (
    DeviceCreated,
    DeviceCredentialsChanged,
    DeviceDeleted,
    DeviceReported,
    EventBus,
)
from otahub.hub.services.labels import MAX_LABELS, check_labels
from otahub.hub.services.read_batch import ReadBatch
from otahub.hub.services.updates import UpdateService
from otahub.hub.services.views import DeviceView, ReportedState, UpdateView
from otahub.hub.store.batching import Debounced, GroupCommit
from otahub.hub.store.database import Database
from otahub.hub.store.models import TERMINAL_STATES, Device, Update, utcnow

log = logging.getLogger("otahub.hub.devices")

DIALECTS = ("thin-edge", "tedge-legacy", "thingsboard", "enos")
# dialects whose devices log in with user name (the device name) and password
PASSWORD_DIALECTS = ("thin-edge", "tedge-legacy")
# gateways register children and act for them on the ``te/`` API
GATEWAY_DIALECT = "thin-edge"
_MAX_TEXT = 255
# Names end up in MQTT topics (thin-edge child ids) and URLs: no separators,
# wildcards, whitespace or control characters.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
_CREDENTIAL = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces
# A forced delete cancels the device's active updates, then deletes it. Canceling
# may start another update (a ThingsBoard device falls back to its type's
# package), which is canceled in the next round; this many rounds at most.
_CANCEL_ROUNDS = 5
# A report that changes nothing but ``last_seen`` is not written at once: the
# times are stored together, at most this much later.
SEEN_FLUSH_S = 2.0
# The returned view of such a report moves its last-seen time in steps this large.
_SEEN_STEP = timedelta(seconds=1)
# How long what this hub wrote for a device is trusted to still be stored
# (another hub instance may have written the device since).
KNOWN_TTL_S = 120.0
# names per ``IN (...)`` of a batch write, well within every backend's parameter limit
_IN_CHUNK = 100
_DEVICES = cast(Table, Device.__table__)
_SET_STATE_BY_NAME = (
    sql_update(_DEVICES)
    .where(_DEVICES.c.name == bindparam("row_name"))
    .values(dialect_state=bindparam("v_state"))
)
_SET_STATE = (
    sql_update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("row_id"))
    .values(dialect_state=bindparam("v_state"))
)
# what a report writes
_REPORTED = (
    "current_fw_title",
    "current_fw_version",
    "current_sw_title",
    "current_sw_version",
    "online",
    "last_seen_at",
)
_SET_REPORTED = (
    sql_update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("row_id"))
    .values({c: bindparam(f"v_{c}") for c in _REPORTED})
)
_SET_SEEN = (
    sql_update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("row_id"))
    .values(last_seen_at=bindparam("v_seen"))
)


def _check_password(dialect: str, password: str | None) -> None:
    """A password (None: none) is for a password dialect and is acceptable text."""
    if dialect not in PASSWORD_DIALECTS:
        raise Invalid(
            f"password: not used by {dialect} devices (only {', '.join(PASSWORD_DIALECTS)})"
        )
    if password is not None and (problem := check_password_text(password)) is not None:
        raise Invalid(f"password: {problem}")


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    name: str
    dialect: str
    device_type: str | None = None
    token: str | None = None  # ThingsBoard access token
    product_key: str | None = None  # EnOS
    device_key: str | None = None  # EnOS
    secret: str | None = None  # EnOS device secret
    password: str | None = None  # thin-edge / tedge-legacy MQTT password (stored hashed)
    gateway: bool = False  # a thin-edge gateway: registers children and acts for them
    certificate: str | None = None  # X.509 client certificate, PEM (any dialect)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)  # key=value pairs

    def certificate_id(self) -> CertificateId | None:
        if self.certificate is None:
            return None
        try:
            found = identify_pem(self.certificate)
        except CertificateError as exc:
            raise Invalid(f"certificate: {exc}") from None
        if found.cn is not None and len(found.cn) > _MAX_TEXT:
            raise Invalid(f"certificate: its CN is longer than {_MAX_TEXT} characters")
        return found

    def validated(self) -> DeviceSpec:
        if not _NAME.fullmatch(self.name) or len(self.name) > _MAX_TEXT:
            raise Invalid(
                f"device name {self.name!r} must be 1 to {_MAX_TEXT} characters of letters, "
                "digits and . _ : @ -, starting with a letter or digit"
            )
        if self.dialect not in DIALECTS:
            raise Invalid(f"dialect must be one of {', '.join(DIALECTS)}, not {self.dialect!r}")
        if self.gateway and self.dialect != GATEWAY_DIALECT:
            raise Invalid(f"gateway: only {GATEWAY_DIALECT} devices are gateways")
        if self.device_type is not None and (
            not self.device_type.strip() or len(self.device_type) > _MAX_TEXT
        ):
            raise Invalid(f"device_type must be 1 to {_MAX_TEXT} characters")
        credentials = {
            "token": self.token,
            "product_key": self.product_key,
            "device_key": self.device_key,
            "secret": self.secret,
        }
        given = {k for k, v in credentials.items() if v is not None}
        optional: set[str] = set()
        if self.dialect == "thingsboard":
            needed = {"token"}
        elif self.dialect == "enos":
            needed = {"product_key", "device_key", "secret"}
        else:
            needed = set()
        if self.certificate is not None:
            # the certificate replaces the token / the signed login's secret; an
            # EnOS device still needs its keys (they are in its topics)
            optional = needed & {"token", "secret"}
            needed = needed - optional
        if missing := sorted(needed - given):
            raise Invalid(f"{self.dialect} devices need {', '.join(missing)}")
        if extra := sorted(given - needed - optional):
            raise Invalid(f"{', '.join(extra)}: not used by {self.dialect} devices")
        if self.password is not None:
            _check_password(self.dialect, self.password)
        for field in sorted(given):
            value = getattr(self, field)
            if not _CREDENTIAL.fullmatch(value) or len(value) > _MAX_TEXT:
                raise Invalid(
                    f"{field} must be 1 to {_MAX_TEXT} printable characters without spaces"
                )
        check_labels(self.labels)
        return self


# what ``DeviceService.change`` may change; a field left out stays as it is
CHANGEABLE = ("device_type", "token", "product_key", "device_key", "secret", "certificate")
_CREDENTIALS = frozenset(CHANGEABLE) - {"device_type"}


class DeviceService:
    def __init__(self, db: Database, bus: EventBus, updates: UpdateService) -> None:
        self.db = db
        self.bus = bus
        self.updates = updates
        # device -> what its last report wrote, and when (monotonic)
        self._known: dict[str, tuple[ReportedState, float]] = {}
        # an update that succeeded wrote the device's version behind this cache
        updates.on_installed(lambda name: self._known.pop(name, None))
        # device -> last seen, not stored yet
        self._seen: dict[str, datetime] = {}
        self._seen_later = Debounced(self.flush_seen, SEEN_FLUSH_S, "last-seen times", log)
        self._reports: GroupCommit[_Report, DeviceView] = GroupCommit(
            self._write_report_batch, "device reports", log
        )
        # lookups by name (every CONNECT with a user name, every connect hook)
        # share queries in a connect wave
        self._reads: ReadBatch[str, DeviceView] = ReadBatch(self._read)
        self._enos_reads: ReadBatch[tuple[str, str], DeviceView] = ReadBatch(self._read_enos)
        # dialect states waiting for the next group write, and the task writing them
        self._states: GroupCommit[tuple[str, dict[str, Any]], None] = GroupCommit(
            self._write_state_batch, "dialect states", log, max_batch=_STATE_BATCH
        )

    async def create(self, spec: DeviceSpec) -> DeviceView:
        spec = spec.validated()
        password_hash = None if spec.password is None else await hash_password_async(spec.password)
        cert = spec.certificate_id()
        async with self.db.session() as s:
            await self._check_unique(s, spec)
            if (
                cert is not None
                and (await s.scalar(select(Device.name).where(Device.cert_sha256 == cert.sha256)))
                is not None
            ):
                raise Conflict("another device already has this certificate")
            row = Device(
                name=spec.name,
                dialect=spec.dialect,
                device_type=spec.device_type,
                tb_token=spec.token,
                enos_product_key=spec.product_key,
                enos_device_key=spec.device_key,
                enos_device_secret=spec.secret,
                password_hash=password_hash,
                gateway=spec.gateway,
                cert_sha256=None if cert is None else cert.sha256,
                cert_cn=None if cert is None else cert.cn,
                labels=dict(spec.labels),
            )
            s.add(row)
            try:
                await s.commit()
            except IntegrityError:
                raise Conflict(f"device {spec.name!r} or its credentials already exist") from None
        view = DeviceView.of(row)
        self._known.pop(view.name, None)  # a device of the same name deleted before
        await self.bus.publish(DeviceCreated(view))
        return view

    async def check_many(
        self, specs: Sequence[DeviceSpec], positions: Sequence[int] | None = None
    ) -> list[Refusal]:
        """Why rows of a batch would be refused (by row, from 0); empty: it would pass.

        ``positions``: each spec's row in the caller's batch, if it left rows out.
        """
        if len(specs) > MAX_BATCH:
            raise Invalid(f"at most {MAX_BATCH} devices per batch, not {len(specs)}")
        return await check_batch(self.db, specs, positions)

    async def create_many(self, specs: Sequence[DeviceSpec]) -> list[DeviceView]:
        """Register every device of ``specs`` in one transaction, or none of them.

        Raises :class:`BatchRefused` listing every refused row and why.
        """
        if not specs:
            return []
        refusals = await self.check_many(specs)
        if refusals:
            log.info(
                "batch of %d device(s) refused: %d row(s), first row %d: %s",
                len(specs),
                len(refusals),
                refusals[0].index + 1,
                refusals[0].reason,
            )
            raise BatchRefused(refusals, len(specs))
        views = await insert_batch(self.db, [spec.validated() for spec in specs])
        log.info("registered %d device(s) in one batch", len(views))
        # One event per device, as for single registrations: the MQTT login
        # directory and the drivers follow the registry through them.
        for view in views:
            self._known.pop(view.name, None)
            await self.bus.publish(DeviceCreated(view))
        return views

    @staticmethod
    async def _check_unique(s: AsyncSession, spec: DeviceSpec) -> None:
        # Checked one by one before the insert so the 409 says which one clashes;
        # the unique constraints still decide a race.
        scalar = s.scalar
        if await scalar(select(Device.id).where(Device.name == spec.name)) is not None:
            raise Conflict(f"device {spec.name!r} already exists")
        if (
            spec.token is not None
            and (await scalar(select(Device.name).where(Device.tb_token == spec.token))) is not None
        ):
            raise Conflict("another device already uses this ThingsBoard access token")
        if (
            spec.product_key is not None
            and (
                await scalar(
                    select(Device.name).where(
                        Device.enos_product_key == spec.product_key,
                        Device.enos_device_key == spec.device_key,
                    )
                )
            )
            is not None
        ):
            raise Conflict(
                f"another device already has EnOS product key {spec.product_key!r} "
                f"and device key {spec.device_key!r}"
            )

    async def list(self, *, dialect: str | None = None) -> list[DeviceView]:
        query = select(Device).order_by(Device.name)
        if dialect is not None:
            query = query.where(Device.dialect == dialect)
        async with self.db.session() as s:
            return [DeviceView.of(row) for row in (await s.scalars(query)).all()]

    async def get(self, name: str) -> DeviceView:
        view = await self._reads.get(name)
        if view is None:
            raise NotFound(f"device {name!r} does not exist")
        return view

    async def _read(self, names: Sequence[str]) -> dict[str, DeviceView]:
        # plain rows (their fields are the model's): a batch loads no ORM objects
        async with self.db.session() as s:
            rows = await s.execute(select(_DEVICES).where(_DEVICES.c.name.in_(names)))
            return {row.name: DeviceView.of(cast(Device, row)) for row in rows}

    async def by_token(self, token: str) -> DeviceView | None:
        """The ThingsBoard device whose access token this is."""
        async with self.db.session() as s:
            row = await s.scalar(select(Device).where(Device.tb_token == token))
            return None if row is None else DeviceView.of(row)

    async def by_enos_keys(self, product_key: str, device_key: str) -> DeviceView | None:
        """The EnOS device of these keys (every EnOS login asks; a wave shares queries)."""
        return await self._enos_reads.get((product_key, device_key))

    async def _read_enos(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], DeviceView]:
        wanted = set(keys)
        found: dict[tuple[str, str], DeviceView] = {}
        async with self.db.session() as s:
            rows = await s.execute(
                select(_DEVICES).where(
                    _DEVICES.c.enos_product_key.in_({p for p, _ in keys}),
                    _DEVICES.c.enos_device_key.in_({d for _, d in keys}),
                )
            )
            for row in rows:
                key = (row.enos_product_key or "", row.enos_device_key or "")
                if key in wanted:
                    found[key] = DeviceView.of(cast(Device, row))
        return found

    async def by_certificate(self, sha256: str) -> DeviceView | None:
        """The device whose registered client certificate has this SHA-256 fingerprint."""
        async with self.db.session() as s:
            row = await s.scalar(select(Device).where(Device.cert_sha256 == sha256))
            return None if row is None else DeviceView.of(row)

    async def by_certificate_cn(self, cn: str) -> tuple[DeviceView, ...]:
        """The devices whose registered client certificate has this subject CN."""
        async with self.db.session() as s:
            rows = (await s.scalars(select(Device).where(Device.cert_cn == cn))).all()
            return tuple(DeviceView.of(row) for row in rows)

    async def delete(self, name: str, *, force: bool = False) -> DeviceView:
        """Remove a device; refused while it has active updates unless ``force``.

        Forced, its active updates are canceled first, through the same path as
        any cancel, so each driver takes back what it published for them
        (retained commands, file links, shared attributes). The device's
        finished updates stay as history (``device_id`` null, name and dialect
        kept); its id is never given to another device.
        """
        for _ in range(_CANCEL_ROUNDS):
            await self.get(name)  # 404 before anything else
            active = await self.updates.list(device=name, active=True, limit=1000)
            if not active:
                break
            if not force:
                raise Conflict(
                    f"device {name!r} has active updates: {_describe(active)}; "
                    "cancel them first, or force the delete to cancel them",
                    active_updates=[u.id for u in active],
                )
            for update in active:
                with contextlib.suppress(Conflict, NotFound):  # finished meanwhile
                    await self.updates.cancel(
                        update.id, reason=f"device {name} deleted", source="api:device-delete"
                    )
                    log.info("update %d canceled: device %s is being deleted", update.id, name)
        self._known.pop(name, None)
        self._seen.pop(name, None)
        async with self.db.session() as s, s.begin():
            row = await s.scalar(select(Device).where(Device.name == name))
            if row is None:
                raise NotFound(f"device {name!r} does not exist")
            # Checked again in the deleting transaction: an update started meanwhile wins.
            still = (
                await s.scalars(
                    select(Update.id).where(
                        Update.device_id == row.id, Update.state.not_in(TERMINAL_STATES)
                    )
                )
            ).all()
            if still:
                raise Conflict(
                    f"device {name!r} got new updates while being deleted: "
                    f"{', '.join(map(str, still))}; try again",
                    active_updates=list(still),
                )
            kept = await s.scalar(
                select(func.count()).select_from(Update).where(Update.device_id == row.id)
            )
            view = DeviceView.of(row)
            await s.delete(row)
            if view.gateway:
                # its children stay, belonging to nobody until registered again
                await s.execute(sql_update(Device).where(Device.owner == name).values(owner=None))
        self._known.pop(name, None)
        self._seen.pop(name, None)
        log.info("device %s (%s) deleted; %d update(s) kept as history", name, view.dialect, kept)
        await self.bus.publish(DeviceDeleted(view))
        return view

    async def set_password(self, name: str, password: str | None) -> DeviceView:
        """Set, change (``password``) or remove (None) a thin-edge or legacy device's password."""
        self._known.pop(name, None)
        device = await self.get(name)
        _check_password(device.dialect, password)
        password_hash = None if password is None else await hash_password_async(password)
        async with self.db.session() as s, s.begin():
            row = await s.scalar(select(Device).where(Device.name == name))
            if row is None:
                raise NotFound(f"device {name!r} does not exist")
            row.password_hash = password_hash
            view = DeviceView.of(row)
        await self.bus.publish(DeviceCredentialsChanged(view))
        return view

    async def set_labels(
        self, name: str, set: Mapping[str, str], remove: Sequence[str] = ()
    ) -> DeviceView:
        """Set the labels in ``set`` and remove those named in ``remove`` (absent ones
        are ignored); the others stay. Groups and rollouts see the change at once."""
        self._known.pop(name, None)
        check_labels(set)
        if both := sorted(k for k in remove if k in set):
            raise Invalid(f"label(s) both set and removed: {', '.join(both)}")
        async with self.db.session() as s, s.begin():
            row = await s.scalar(select(Device).where(Device.name == name).with_for_update())
            if row is None:
                raise NotFound(f"device {name!r} does not exist")
            labels = {k: v for k, v in (row.labels or {}).items() if k not in remove}
            labels.update(set)
            if len(labels) > MAX_LABELS:
                raise Invalid(f"a device has at most {MAX_LABELS} labels, not {len(labels)}")
            if labels != (row.labels or {}):
                row.labels = labels  # a new dict: the JSON column is not mutation-tracked
            view = DeviceView.of(row)
        log.info("device %s labels: %s", name, _pairs(view.labels))
        await self.bus.publish(DeviceReported(view))
        return view

    async def change(self, name: str, changes: dict[str, str | None]) -> DeviceView:
        """Change the device type or the dialect's credentials (None removes one).

        The result must be a valid device of its dialect, with credentials no
        other device has. When credentials change, the device's connected
        sessions are closed: it logs in again with the new ones.
        """
        if unknown := sorted(set(changes) - set(CHANGEABLE)):
            raise Invalid(f"{', '.join(unknown)}: cannot be changed")
        self._known.pop(name, None)
        async with self.db.session() as s, s.begin():
            row = await s.scalar(select(Device).where(Device.name == name))
            if row is None:
                raise NotFound(f"device {name!r} does not exist")
            current = {
                "device_type": row.device_type,
                "token": row.tb_token,
                "product_key": row.enos_product_key,
                "device_key": row.enos_device_key,
                "secret": row.enos_device_secret,
                "certificate": None,  # only its fingerprint is kept
            }
            merged = {**current, **changes}
            if "certificate" not in changes and row.cert_sha256 is not None:
                # a kept certificate still stands in for the token / secret
                merged["certificate"] = _KEPT
            spec = DeviceSpec(
                name=row.name,
                dialect=row.dialect,
                gateway=row.gateway,
                device_type=merged["device_type"],
                token=merged["token"],
                product_key=merged["product_key"],
                device_key=merged["device_key"],
                secret=merged["secret"],
                certificate=merged["certificate"],
            )
            spec.validated()
            cert = spec.certificate_id() if "certificate" in changes else None
            await self._check_unique_for(s, row, spec, cert)
            row.device_type = spec.device_type
            row.tb_token = spec.token
            row.enos_product_key = spec.product_key
            row.enos_device_key = spec.device_key
            row.enos_device_secret = spec.secret
            if "certificate" in changes:
                row.cert_sha256 = None if cert is None else cert.sha256
                row.cert_cn = None if cert is None else cert.cn
            try:
                await s.flush()
            except IntegrityError:
                raise Conflict(f"another device already has these credentials ({name})") from None
            view = DeviceView.of(row)
        credentials = {k for k, v in changes.items() if k in _CREDENTIALS and v != current.get(k)}
        log.info("device %s changed: %s", name, ", ".join(sorted(changes)) or "nothing")
        if credentials or "certificate" in changes:
            await self.bus.publish(DeviceCredentialsChanged(view))
        return view

    @staticmethod
    async def _check_unique_for(
        s: AsyncSession, row: Device, spec: DeviceSpec, cert: CertificateId | None
    ) -> None:
        others = Device.id != row.id
        if spec.token is not None and (
            await s.scalar(select(Device.name).where(others, Device.tb_token == spec.token))
        ):
            raise Conflict("another device already uses this ThingsBoard access token")
        if spec.product_key is not None and (
            await s.scalar(
                select(Device.name).where(
                    others,
                    Device.enos_product_key == spec.product_key,
                    Device.enos_device_key == spec.device_key,
                )
            )
        ):
            raise Conflict(
                f"another device already has EnOS product key {spec.product_key!r} "
                f"and device key {spec.device_key!r}"
            )
        if cert is not None and (
            await s.scalar(select(Device.name).where(others, Device.cert_sha256 == cert.sha256))
        ):
            raise Conflict("another device already has this certificate")

    async def set_owner(self, name: str, owner: str) -> DeviceView:
        """Record the gateway that registered the thin-edge child ``name``."""
        self._known.pop(name, None)
        async with self.db.session() as s, s.begin():
            row = await s.scalar(select(Device).where(Device.name == name))
            if row is None:
                raise NotFound(f"device {name!r} does not exist")
            row.owner = owner
            return DeviceView.of(row)

    async def set_dialect_state(self, name: str, state: dict[str, Any]) -> None:
        """Replace what the device's driver remembers about it; returns once committed.

        Drivers write it on every connect (an EnOS login's timestamp, a
        thin-edge registration): the writes that come while one transaction
        runs share the next (group commit), applied in the order they came.
        """
        await self._states.submit((name, dict(state)))

    async def _write_state_batch(
        self, batch: builtins.list[tuple[str, dict[str, Any]]]
    ) -> builtins.list[Exception | None]:
        # plain statements: a connect wave's batch loads no ORM objects
        names = sorted({name for name, _ in batch})
        found: set[str] = set()
        async with self.db.session() as s, s.begin():
            for start in range(0, len(names), _IN_CHUNK):
                found.update(
                    await s.scalars(
                        select(_DEVICES.c.name).where(
                            _DEVICES.c.name.in_(names[start : start + _IN_CHUNK])
                        )
                    )
                )
            # in the order they came: a later write for the same device wins
            params = [{"row_name": n, "v_state": state} for n, state in batch if n in found]
            if params:
                await s.execute(_SET_STATE_BY_NAME, params)
        return [
            None if name in found else NotFound(f"device {name!r} does not exist")
            for name, _ in batch
        ]

    async def dialect_states(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What the driver remembers about each of ``names`` (devices gone are left out)."""
        wanted = sorted(set(names))
        states: dict[str, dict[str, Any]] = {}
        async with self.db.session() as s:
            for start in range(0, len(wanted), _IN_CHUNK):
                found = await s.execute(
                    select(_DEVICES.c.name, _DEVICES.c.dialect_state).where(
                        _DEVICES.c.name.in_(wanted[start : start + _IN_CHUNK])
                    )
                )
                states.update((name, dict(stored or {})) for name, stored in found.all())
        return states

    async def set_dialect_states(self, states: Mapping[str, dict[str, Any]]) -> None:
        """``set_dialect_state`` for many devices, in one transaction (devices gone
        meanwhile are skipped)."""
        params = [{"row_name": name, "v_state": dict(state)} for name, state in states.items()]
        async with self.db.session() as s, s.begin():
            for start in range(0, len(params), _IN_CHUNK):
                await s.execute(_SET_STATE_BY_NAME, params[start : start + _IN_CHUNK])

    async def merge_dialect_section(
        self, section: str, values: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """Merge ``values[device]`` into the ``section`` object of each device's
        dialect state, in one transaction (devices gone meanwhile are skipped)."""
        names = sorted(values)
        async with self.db.session() as s, s.begin():
            # plain rows, a few at a time: a batch of a whole fleet's reports must
            # not load it as ORM objects at once (the memory stays with the process)
            for start in range(0, len(names), _IN_CHUNK):
                part = names[start : start + _IN_CHUNK]
                found = await s.execute(
                    select(_DEVICES.c.id, _DEVICES.c.name, _DEVICES.c.dialect_state).where(
                        _DEVICES.c.name.in_(part)
                    )
                )
                params = []
                for row_id, name, stored in found.all():
                    state = dict(stored or {})
                    old = state.get(section)
                    state[section] = {**(old if isinstance(old, dict) else {}), **values[name]}
                    params.append({"row_id": row_id, "v_state": state})
                if params:
                    await s.execute(_SET_STATE, params)

    async def report(
        self,
        name: str,
        *,
        kind: str = "firmware",
        title: str | None = None,
        version: str | None = None,
        online: bool | None = None,
        seen_at: datetime | None = None,
    ) -> ReportedState:
        """Record what a device said about itself (drivers call this).

        A report that changes nothing this hub wrote for the device shortly
        before (title, version, online) only moves ``last_seen``: that is
        stored with the next batch of such times, and announces nothing.
        """
        seen = seen_at or utcnow()
        known = self._known.get(name)
        if known is not None and time.monotonic() - known[1] < KNOWN_TTL_S:
            state = known[0]
            if _unchanged(state, kind, title, version, online):
                # the time moves in whole seconds: a new state per message of a
                # chatty device is measurable work for nothing
                if state.last_seen_at is None or seen - state.last_seen_at >= _SEEN_STEP:
                    state = dataclasses.replace(state, last_seen_at=seen)
                    self._known[name] = (state, known[1])
                self._seen[name] = seen
                self._seen_later.touch()
                return state
        # shielded: a caller that gives up does not fail the others of its batch
        view = await asyncio.shield(
            self._reports.submit(_Report(name, kind, title, version, online, seen))
        )
        state = ReportedState.of(view)
        self._known[name] = (state, time.monotonic())
        self._seen.pop(name, None)  # stored with the rest
        await self.bus.publish(DeviceReported(view))
        return state

    async def _write_report_batch(
        self, batch: builtins.list[_Report]
    ) -> builtins.list[DeviceView | Exception]:
        """Store ``batch`` in one transaction: each report's outcome."""
        outcomes: builtins.list[DeviceView | Exception] = []
        async with self.db.session() as s, s.begin():
            names = sorted({r.name for r in batch})
            rows: dict[str, Device] = {}
            for start in range(0, len(names), _IN_CHUNK):
                found = await s.execute(
                    select(_DEVICES).where(_DEVICES.c.name.in_(names[start : start + _IN_CHUNK]))
                )
                # plain rows with the model's attribute names, as DeviceView.of reads them
                rows.update(
                    {r["name"]: cast(Device, SimpleNamespace(**r)) for r in found.mappings()}
                )
            for report in batch:
                row = rows.get(report.name)
                if row is None:
                    outcomes.append(NotFound(f"device {report.name!r} does not exist"))
                    continue
                _apply_report(row, report)
                outcomes.append(DeviceView.of(row))
            if rows:
                await s.execute(
                    _SET_REPORTED,
                    [
                        {"row_id": row.id, **{f"v_{c}": getattr(row, c) for c in _REPORTED}}
                        for row in rows.values()
                    ],
                )
        return outcomes

    async def flush_seen(self) -> None:
        """Store the last-seen times not stored yet, in one transaction."""
        pending, self._seen = self._seen, {}
        if not pending:
            return
        try:
            await self._store_seen(pending)
        except BaseException:
            for name, seen in pending.items():  # kept for the retry; newer times win
                self._seen[name] = max(seen, self._seen.get(name, seen))
            raise

    async def _store_seen(self, pending: dict[str, datetime]) -> None:
        names = sorted(pending)
        async with self.db.session() as s, s.begin():
            for start in range(0, len(names), _IN_CHUNK):
                part = names[start : start + _IN_CHUNK]
                found = await s.execute(
                    select(_DEVICES.c.id, _DEVICES.c.name, _DEVICES.c.last_seen_at).where(
                        _DEVICES.c.name.in_(part)
                    )
                )
                params = [
                    {"row_id": row_id, "v_seen": pending[name]}
                    for row_id, name, stored in found.all()
                    if stored is None or stored < pending[name]
                ]
                if params:
                    await s.execute(_SET_SEEN, params)

    async def close(self) -> None:
        """Store what is pending (the hub stops)."""
        await self._seen_later.close()


#: Dialect states per group write.
_STATE_BATCH = 200


@dataclass(slots=True)
class _Report:
    """A report waiting for the group commit."""

    name: str
    kind: str
    title: str | None
    version: str | None
    online: bool | None
    seen: datetime


def _apply_report(row: Device, report: _Report) -> None:
    title, version = report.title, report.version
    if report.kind == "software":
        row.current_sw_title = title if title is not None else row.current_sw_title
        row.current_sw_version = version if version is not None else row.current_sw_version
    else:
        row.current_fw_title = title if title is not None else row.current_fw_title
        row.current_fw_version = version if version is not None else row.current_fw_version
    if report.online is not None:
        row.online = report.online
    row.last_seen_at = report.seen


def _unchanged(
    state: ReportedState, kind: str, title: str | None, version: str | None, online: bool | None
) -> bool:
    """Whether a report says nothing ``state`` does not say already (but the time)."""
    if kind == "software":
        runs = (state.current_sw_title, state.current_sw_version)
    else:
        runs = (state.current_fw_title, state.current_fw_version)
    return (
        (title is None or title == runs[0])
        and (version is None or version == runs[1])
        and (online is None or online == state.online)
    )


def _pairs(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(none)"


# Stands for the certificate a device keeps (only its fingerprint is stored):
# validation counts it as present.
_KEPT = "(kept)"


def _describe(updates: list[UpdateView]) -> str:
    return ", ".join(f"{u.id} ({u.title} {u.version}, {u.state})" for u in updates)
