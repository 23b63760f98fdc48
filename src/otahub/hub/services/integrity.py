"""Serving firmware only while its stored bytes still match their SHA-256.

Every path that hands firmware bytes to a device (HTTP downloads, file
transfer links, EnOS downloads, ThingsBoard chunks and HTTP API) asks
``servable`` first. A blob that no longer matches is refused, and every
active update of a package stored as that blob fails with the reason: no
device can install it, and a failure now beats a timeout later. The blob
store decides and caches the verdict (``hub/store/integrity.py``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import select

from otahub.hub.services.errors import Conflict, NotFound, ServiceError
from otahub.hub.services.updates import UpdateService
from otahub.hub.services.views import PackageView
from otahub.hub.store.blobs import BlobStore
from otahub.hub.store.database import Database
from otahub.hub.store.ids import is_row_id
from otahub.hub.store.integrity import BlobMismatch, Verdict
from otahub.hub.store.models import TERMINAL_STATES, FirmwarePackage, Update
from otahub.protocols.states import UpdateState

log = logging.getLogger("otahub.hub.integrity")

#: ``code`` of an update failed because its package's bytes changed on the hub
CORRUPT_CODE = "firmware_corrupt"
SOURCE = "hub:integrity"


class FirmwareCorrupt(ServiceError):
    status = 500
    title = "Stored firmware is corrupt"


#: "ok", "corrupt" (the bytes changed) or "missing" (no file)
ScrubStatus = Literal["ok", "corrupt", "missing"]


@dataclass(frozen=True, slots=True)
class ScrubResult:
    package: PackageView
    status: ScrubStatus
    actual_sha256: str | None


def _corrupt_detail(packages: Iterable[PackageView], verdict: Verdict) -> str:
    names = ", ".join(f"{p.title} {p.version} (package {p.id})" for p in packages)
    return (
        f"the stored content of {names or 'blob ' + verdict.sha256} no longer matches its "
        f"SHA-256 {verdict.sha256} (it now hashes to {verdict.actual}); the hub will not "
        "serve it: upload the package again"
    )


class IntegrityService:
    def __init__(self, db: Database, blobs: BlobStore, updates: UpdateService) -> None:
        self.db = db
        self.blobs = blobs
        self.updates = updates

    async def check(self, sha256: str) -> Path | None:
        """The blob's local file once its bytes are known to match; None when there
        is none. Raises ``FirmwareCorrupt``, logged once per change of the file."""
        try:
            return await self.blobs.verified_path(sha256)
        except BlobMismatch as exc:
            raise await self._refused(exc.verdict, fail_updates=False) from None

    async def servable(self, sha256: str) -> Path | None:
        """``check``, for a device's download: a refusal also fails the active updates."""
        try:
            return await self.blobs.verified_path(sha256)
        except BlobMismatch as exc:
            raise await self._refused(exc.verdict, fail_updates=True) from None

    async def _refused(self, verdict: Verdict, *, fail_updates: bool) -> FirmwareCorrupt:
        """One log line when the change is new or updates were failed, not per request."""
        detail = _corrupt_detail(await self._packages_of(verdict.sha256), verdict)
        failed = await self._fail_active(verdict.sha256, detail) if fail_updates else []
        if verdict.changed or failed:
            failures = f"; failed update(s) {', '.join(map(str, failed))}" if failed else ""
            log.error("%s%s", detail, failures)
        return FirmwareCorrupt(detail)

    async def scrub(self, package_ids: list[int] | None = None) -> list[ScrubResult]:
        """Read every byte of the packages' blobs again (all packages when None)."""
        async with self.db.session() as s:
            query = select(FirmwarePackage).order_by(FirmwarePackage.id)
            if package_ids is not None:
                # an id no row can have is unknown, not an overflow in the driver
                query = query.where(
                    FirmwarePackage.id.in_([i for i in package_ids if is_row_id(i)])
                )
            packages = [PackageView.of(row) for row in (await s.scalars(query)).all()]
        if package_ids is not None:
            unknown = sorted(set(package_ids) - {p.id for p in packages})
            if unknown:
                raise NotFound(f"no firmware package {', '.join(map(str, unknown))}")
        verdicts: dict[str, Verdict] = {}
        for package in packages:
            if package.sha256 not in verdicts:
                verdict = verdicts[package.sha256] = await self.blobs.verify(package.sha256)
                if not verdict.ok and not verdict.missing:
                    await self._refused(verdict, fail_updates=True)
        results = []
        for package in packages:
            verdict = verdicts[package.sha256]
            status: ScrubStatus = (
                "ok" if verdict.ok else "missing" if verdict.missing else "corrupt"
            )
            results.append(ScrubResult(package, status, verdict.actual))
        return results

    async def _packages_of(self, sha256: str) -> list[PackageView]:
        async with self.db.session() as s:
            rows = await s.scalars(
                select(FirmwarePackage)
                .where(FirmwarePackage.sha256 == sha256)
                .order_by(FirmwarePackage.id)
            )
            return [PackageView.of(row) for row in rows.all()]

    async def _fail_active(self, sha256: str, reason: str) -> list[int]:
        async with self.db.session() as s:
            ids = list(
                (
                    await s.scalars(
                        select(Update.id)
                        .join(FirmwarePackage, Update.package_id == FirmwarePackage.id)
                        .where(
                            FirmwarePackage.sha256 == sha256,
                            Update.state.not_in(TERMINAL_STATES),
                        )
                        .order_by(Update.id)
                    )
                ).all()
            )
        failed = []
        for update_id in ids:
            # finished meanwhile by its device or another request: nothing to fail
            with contextlib.suppress(Conflict, NotFound):
                await self.updates.transition(
                    update_id,
                    UpdateState.FAILED,
                    reason=reason,
                    code=CORRUPT_CODE,
                    source=SOURCE,
                )
                failed.append(update_id)
        return failed
