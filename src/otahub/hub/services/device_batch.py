"""Registering many devices at once, all or nothing.

Every row is checked before anything is written: its own validity, clashes
with other rows of the batch (names and credentials), and clashes with the
registry. One refused row refuses the batch, and the answer names every
refused row with its reason, so a file can be fixed in one go. Otherwise all
rows are inserted in one transaction.

Argon2 hashing of passwords dominates a batch of password rows (tens of
milliseconds of CPU each, on purpose); hashes run in threads, as many at a
time as there are cores (argon2 releases the GIL, and each hash holds its
memory cost, 64 MiB by default, while it runs).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.device_auth.certificates import CertificateId
from otahub.hub.device_auth.passwords import hash_password_async
from otahub.hub.services.errors import Conflict, Invalid
from otahub.hub.services.views import DeviceView
from otahub.hub.store.database import Database
from otahub.hub.store.models import Base, Device

if TYPE_CHECKING:
    from otahub.hub.services.devices import DeviceSpec  # devices.py imports this module

log = logging.getLogger("otahub.hub.devices")

#: Rows per batch at most: beyond this a request is refused before any check.
MAX_BATCH = 100_000
_CHUNK = 1000  # values per IN (...) query
DEVICES = Base.metadata.tables["devices"]


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int  # the row's position in the batch, from 0
    name: str | None
    reason: str
    same_as: int | None = None  # the earlier row (from 0) this one repeats a name or key of

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"row": self.index + 1, "name": self.name}
        described["reason"] = self.reason
        if self.same_as is not None:
            described["same_as"] = self.same_as + 1
        return described


class BatchRefused(Invalid):
    """Some rows of a batch are refused; nothing was written. ``refused`` lists them
    (``row`` counts from 1)."""

    def __init__(self, refusals: Sequence[Refusal], total: int) -> None:
        ordered = sorted(refusals, key=lambda r: r.index)
        first = ordered[0]
        super().__init__(
            f"{len(ordered)} of {total} device(s) refused, nothing was registered; "
            f"first: row {first.index + 1}: {first.reason}",
            refused=[r.describe() for r in ordered],
        )
        self.refusals = ordered


@dataclass(frozen=True, slots=True)
class _Row:
    index: int
    spec: DeviceSpec
    cert: CertificateId | None


async def check_batch(
    db: Database, specs: Sequence[DeviceSpec], positions: Sequence[int] | None = None
) -> list[Refusal]:
    """Every reason to refuse a row of ``specs``, by row; empty: all fine.

    ``positions``: each spec's row in the request, when the caller left out rows
    it refused itself (refusals then name the request's rows); else 0, 1, 2...
    """
    refusals: list[Refusal] = []
    rows: list[_Row] = []
    for count, (index, spec) in enumerate(
        zip(positions or range(len(specs)), specs, strict=True), start=1
    ):
        if count % _CHUNK == 0:
            await asyncio.sleep(0)  # a large batch does not hold the event loop
        try:
            spec = spec.validated()
            rows.append(_Row(index, spec, spec.certificate_id()))
        except Invalid as exc:
            refusals.append(Refusal(index, spec.name or None, exc.detail))
    rows = _within_batch(rows, refusals)
    async with db.session() as s:
        await _against_registry(s, rows, refusals)
    return sorted(refusals, key=lambda r: r.index)


def _within_batch(rows: list[_Row], refusals: list[Refusal]) -> list[_Row]:
    """The rows that clash with no earlier row; the others are refused, naming that row."""
    seen: dict[tuple[str, object], int] = {}
    kept: list[_Row] = []
    for row in rows:
        spec = row.spec
        keys: list[tuple[str, object, str]] = [("name", spec.name, f"name {spec.name!r}")]
        if spec.token is not None:
            keys.append(("token", spec.token, "ThingsBoard access token"))
        if spec.product_key is not None:
            keys.append(
                (
                    "enos",
                    (spec.product_key, spec.device_key),
                    f"EnOS product key {spec.product_key!r} and device key {spec.device_key!r}",
                )
            )
        if row.cert is not None:
            keys.append(("cert", row.cert.sha256, "certificate"))
        clash = next(((k, v, what) for k, v, what in keys if (k, v) in seen), None)
        if clash is not None:
            kind, value, what = clash
            first = seen[kind, value]
            refusals.append(
                Refusal(row.index, spec.name, f"{what} is also on row {first + 1}", first)
            )
            continue
        for kind, value, _ in keys:
            seen[kind, value] = row.index
        kept.append(row)
    return kept


async def _against_registry(s: AsyncSession, rows: list[_Row], refusals: list[Refusal]) -> None:
    names = await _existing(s, Device.name, [r.spec.name for r in rows])
    tokens = await _existing(s, Device.tb_token, [r.spec.token for r in rows if r.spec.token])
    certs = await _existing(
        s, Device.cert_sha256, [r.cert.sha256 for r in rows if r.cert is not None]
    )
    product_keys = sorted({r.spec.product_key for r in rows if r.spec.product_key is not None})
    pairs: set[tuple[str | None, str | None]] = set()
    for start in range(0, len(product_keys), _CHUNK):
        found = await s.execute(
            select(Device.enos_product_key, Device.enos_device_key).where(
                Device.enos_product_key.in_(product_keys[start : start + _CHUNK])
            )
        )
        pairs.update((pk, dk) for pk, dk in found)
    for row in rows:
        spec = row.spec
        reason = None
        if spec.name in names:
            reason = f"device {spec.name!r} already exists"
        elif spec.token is not None and spec.token in tokens:
            reason = "another device already uses this ThingsBoard access token"
        elif spec.product_key is not None and (spec.product_key, spec.device_key) in pairs:
            reason = (
                f"another device already has EnOS product key {spec.product_key!r} "
                f"and device key {spec.device_key!r}"
            )
        elif row.cert is not None and row.cert.sha256 in certs:
            reason = "another device already has this certificate"
        if reason is not None:
            refusals.append(Refusal(row.index, spec.name, reason))


async def _existing(s: AsyncSession, column: Any, values: list[str]) -> set[str]:
    """Which of ``values`` the registry already holds in ``column``."""
    found: set[str] = set()
    for start in range(0, len(values), _CHUNK):
        chunk = values[start : start + _CHUNK]
        found.update(await s.scalars(select(column).where(column.in_(chunk))))
    return found


async def insert_batch(db: Database, specs: Sequence[DeviceSpec]) -> list[DeviceView]:
    """Insert checked ``specs`` (see :func:`check_batch`) in one transaction, in order."""
    hashes = await _hash_passwords([spec.password for spec in specs])
    values: list[dict[str, Any]] = []
    for spec, password_hash in zip(specs, hashes, strict=True):
        cert = spec.certificate_id()
        values.append(
            {
                "name": spec.name,
                "dialect": spec.dialect,
                "device_type": spec.device_type,
                "tb_token": spec.token,
                "enos_product_key": spec.product_key,
                "enos_device_key": spec.device_key,
                "enos_device_secret": spec.secret,
                "password_hash": password_hash,
                "gateway": spec.gateway,
                "cert_sha256": None if cert is None else cert.sha256,
                "cert_cn": None if cert is None else cert.cn,
                "labels": dict(spec.labels),
            }
        )
    names = [spec.name for spec in specs]
    async with db.session() as s:
        try:
            # A Core executemany on the table, a chunk at a time so that the event
            # loop runs between chunks: the ORM's bulk insert is several times
            # slower, and with RETURNING runs a statement per row on SQLite. The
            # rows are read back by name.
            for start in range(0, len(values), _CHUNK):
                await s.execute(insert(DEVICES), values[start : start + _CHUNK])
            by_name: dict[str, DeviceView] = {}
            for start in range(0, len(names), _CHUNK):
                chunk = names[start : start + _CHUNK]
                rows = await s.scalars(select(Device).where(Device.name.in_(chunk)))
                by_name.update((row.name, DeviceView.of(row)) for row in rows)
            await s.commit()
        except IntegrityError:
            raise Conflict(
                "a device or credential of the batch was registered meanwhile; "
                "nothing was registered, try again"
            ) from None
    return [by_name[name] for name in names]


async def _hash_passwords(passwords: list[str | None]) -> list[str | None]:
    """argon2 hashes of the given passwords (None stays None), a core's worth at a time."""
    if not any(p is not None for p in passwords):
        return [None] * len(passwords)
    slots = asyncio.Semaphore(os.cpu_count() or 1)

    async def one(password: str | None) -> str | None:
        if password is None:
            return None
        async with slots:
            return await hash_password_async(password)

    return list(await asyncio.gather(*(one(p) for p in passwords)))
