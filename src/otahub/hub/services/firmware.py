"""Firmware packages: streamed uploads, URL imports, listing and deletion."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, replace

import httpx
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from otahub.hub.services.errors import Conflict, Invalid, NotFound, UpstreamFailed
from otahub.hub.services.events import EventBus, PackageCreated, PackageDeleted
from otahub.hub.services.signing import SigningService, StagedTargets
from otahub.hub.services.views import PackageView
from otahub.hub.store.blobs import BlobInfo, BlobStore, BlobUpload
from otahub.hub.store.database import Database
from otahub.hub.store.ids import is_row_id
from otahub.hub.store.models import TERMINAL_STATES, FirmwarePackage, Update
from otahub.protocols.checksums import Algorithm

log = logging.getLogger("otahub.hub.firmware")

KINDS = ("firmware", "software")
_MAX_TEXT = 255
_VIEWS_KEPT = 4096  # package views remembered by id
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A URL import retries this many times, resuming with a Range request each time,
# after a pause that doubles from URL_RETRY_DELAY_S.
URL_ATTEMPTS = 5
URL_RETRY_DELAY_S = 0.2


@dataclass(frozen=True, slots=True)
class PackageMeta:
    title: str
    version: str
    kind: str = "firmware"
    device_type: str | None = None
    filename: str | None = None
    content_type: str = "application/octet-stream"
    # ThingsBoard's fw_checksum_algorithm for this package; None: SHA256
    checksum_algorithm: str | None = None

    def validated(self) -> PackageMeta:
        for field, value in (("title", self.title), ("version", self.version)):
            if not value or not value.strip():
                raise Invalid(f"{field} must not be empty")
            if len(value) > _MAX_TEXT or _CONTROL.search(value):
                raise Invalid(f"{field} must be at most {_MAX_TEXT} printable characters")
        if self.kind not in KINDS:
            raise Invalid(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.device_type is not None and (
            not self.device_type.strip() or len(self.device_type) > _MAX_TEXT
        ):
            raise Invalid(f"device_type must be 1 to {_MAX_TEXT} characters")
        filename = self.filename
        if filename is not None:
            # Only the last path component, and never something a header cannot carry.
            filename = _CONTROL.sub("", filename.replace("\\", "/").rsplit("/", 1)[-1])[:_MAX_TEXT]
        algorithm = Algorithm.SHA256
        if self.checksum_algorithm is not None:
            try:
                algorithm = Algorithm.parse(self.checksum_algorithm)
            except ValueError as exc:
                raise Invalid(f"checksum_algorithm: {exc}") from None
        return PackageMeta(
            title=self.title.strip(),
            version=self.version.strip(),
            kind=self.kind,
            device_type=self.device_type.strip() if self.device_type else None,
            filename=filename or None,
            content_type=self.content_type or "application/octet-stream",
            checksum_algorithm=algorithm.value,
        )


class FirmwareService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        bus: EventBus,
        http_client: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.bus = bus
        self._http_client = http_client or (
            lambda: httpx.AsyncClient(follow_redirects=True, timeout=httpx.Timeout(30.0))
        )
        # Serializes "blob now referenced" against "blob now unreferenced", so a
        # delete never removes a file that a concurrent upload of the same bytes
        # is about to point a new row at.
        self._blob_refs = asyncio.Lock()
        #: Signed metadata (``otahub serve --signing-keys``); None: packages are unsigned.
        self.signing: SigningService | None = None
        # Packages are written once and only ever deleted, and only by this
        # process, so a view read once stays right until its delete: every
        # download by id asks for one, and the query was about half of the
        # hub's CPU per small range request. A delete bumps the generation, so
        # a lookup that raced with it does not put the deleted view back.
        self._views: OrderedDict[int, PackageView] = OrderedDict()
        self._generation = 0

    # -- queries ------------------------------------------------------------

    async def list(self, *, kind: str | None = None, title: str | None = None) -> list[PackageView]:
        query = select(FirmwarePackage).order_by(FirmwarePackage.id)
        if kind is not None:
            query = query.where(FirmwarePackage.kind == kind)
        if title is not None:
            query = query.where(FirmwarePackage.title == title)
        async with self.db.session() as s:
            return [PackageView.of(row) for row in (await s.scalars(query)).all()]

    async def get(self, package_id: int) -> PackageView:
        _check_id(package_id)
        view = self._views.get(package_id)
        if view is not None:
            self._views.move_to_end(package_id)
            return view
        generation = self._generation
        async with self.db.session() as s:
            row = await s.get(FirmwarePackage, package_id)
            if row is None:
                raise NotFound(f"firmware package {package_id} does not exist")
            view = PackageView.of(row)
        if generation == self._generation:
            self._views[package_id] = view
            if len(self._views) > _VIEWS_KEPT:
                self._views.popitem(last=False)
        return view

    async def find(self, title: str, version: str) -> PackageView:
        async with self.db.session() as s:
            row = await s.scalar(
                select(FirmwarePackage).where(
                    FirmwarePackage.title == title, FirmwarePackage.version == version
                )
            )
            if row is None:
                raise NotFound(f"no firmware package {title!r} version {version!r}")
            return PackageView.of(row)

    async def ensure_new(self, meta: PackageMeta) -> None:
        """Refuse early when title and version are taken (409)."""
        async with self.db.session() as s:
            existing = await s.scalar(
                select(FirmwarePackage.id).where(
                    FirmwarePackage.title == meta.title, FirmwarePackage.version == meta.version
                )
            )
        if existing is not None:
            raise Conflict(
                f"firmware {meta.title!r} version {meta.version!r} already exists (id {existing})"
            )

    # -- adding ---------------------------------------------------------------

    async def upload(self, meta: PackageMeta, chunks: AsyncIterable[bytes]) -> PackageView:
        """Store a package from a byte stream; checksums are computed while it streams."""
        meta = meta.validated()
        await self.ensure_new(meta)  # fail before receiving gigabytes, not after
        async with self.blobs.begin() as upload:
            async for chunk in chunks:
                await upload.write(chunk)
            return await self._commit(meta, upload, source_url=None)

    async def begin_upload(self) -> BlobUpload:
        """For callers that learn the metadata only after the bytes (multipart forms)."""
        return self.blobs.begin()

    async def finish_upload(
        self, meta: PackageMeta, upload: BlobUpload, *, targets: bytes | None = None
    ) -> PackageView:
        """Keep ``upload`` as a package; ``targets`` is the publisher's metadata signing it."""
        meta = meta.validated()
        await self.ensure_new(meta)
        staged = self.stage_targets(meta, targets) if targets is not None else None
        return await self._commit(meta, upload, source_url=None, staged=staged)

    def stage_targets(self, meta: PackageMeta, targets: bytes) -> StagedTargets:
        """Check signed targets metadata for ``meta`` before its bytes are kept."""
        if self.signing is None:
            raise Invalid(
                "this hub keeps no signed metadata (start it with --signing-keys) "
                "and cannot accept a signed package"
            )
        meta = meta.validated()
        return self.signing.stage(targets, meta.title, meta.version, meta.kind)

    async def register_url(self, meta: PackageMeta, url: str) -> PackageView:
        """Download ``url`` once (resuming after network errors) and keep it as a package."""
        meta = meta.validated()
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError):
            raise Invalid(f"url {url!r} is not a valid URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise Invalid(f"url must be an absolute http(s) URL, not {url!r}")
        await self.ensure_new(meta)
        async with self.blobs.begin() as upload, self._http_client() as client:
            content_type = await _download(client, url, upload)
            if meta.filename is None:
                meta = replace(meta, filename=parsed.path.rsplit("/", 1)[-1] or None)
            if content_type and meta.content_type == "application/octet-stream":
                meta = replace(meta, content_type=content_type.split(";")[0].strip())
            return await self._commit(meta.validated(), upload, source_url=url)

    async def _commit(
        self,
        meta: PackageMeta,
        upload: BlobUpload,
        *,
        source_url: str | None,
        staged: StagedTargets | None = None,
    ) -> PackageView:
        if upload.size == 0:
            # Nothing to install: agents would download, verify and retry it forever.
            origin = f"from {source_url}" if source_url else "uploaded"
            log.warning(
                "refused firmware %s %s: the file %s is empty", meta.title, meta.version, origin
            )
            raise Invalid(f"the file {origin} is empty (0 bytes); a firmware package needs content")
        async with self._blob_refs:
            info = await upload.commit()
            try:
                if staged is not None:
                    assert self.signing is not None
                    self.signing.check_blob(staged, info)
                    # Row and metadata together: no signed target without its package.
                    async with self.signing.lock:
                        self.signing.check_version(staged)
                        view = await self._insert(meta, info, source_url)
                        await self.signing.publish(staged)
                else:
                    view = await self._insert(meta, info, source_url)
            except IntegrityError:
                await self._drop_blob_if_unused(info.sha256)
                raise Conflict(
                    f"firmware {meta.title!r} version {meta.version!r} already exists"
                ) from None
            except (Invalid, Conflict):
                await self._drop_blob_if_unused(info.sha256)
                raise
        log.info("stored firmware %s %s (%d bytes)", meta.title, meta.version, info.size)
        if staged is None and self.signing is not None and self.signing.hub_signs_targets:
            await self.signing.sign_package(view)
        await self.bus.publish(PackageCreated(view))
        return view

    async def _insert(
        self, meta: PackageMeta, info: BlobInfo, source_url: str | None
    ) -> PackageView:
        c = info.checksums
        row = FirmwarePackage(
            title=meta.title,
            version=meta.version,
            kind=meta.kind,
            device_type=meta.device_type,
            filename=meta.filename,
            content_type=meta.content_type,
            source_url=source_url,
            size=info.size,
            sha256=c[Algorithm.SHA256],
            md5=c[Algorithm.MD5],
            sha384=c[Algorithm.SHA384],
            sha512=c[Algorithm.SHA512],
            crc32=c[Algorithm.CRC32],
            murmur3_32=c[Algorithm.MURMUR3_32],
            murmur3_128=c[Algorithm.MURMUR3_128],
            checksum_algorithm=meta.checksum_algorithm or Algorithm.SHA256.value,
        )
        async with self.db.session() as s, s.begin():
            s.add(row)
        return PackageView.of(row)

    # -- deleting -------------------------------------------------------------

    async def delete(self, package_id: int) -> PackageView:
        _check_id(package_id)
        async with self._blob_refs:
            async with self.db.session() as s, s.begin():
                row = await s.get(FirmwarePackage, package_id)
                if row is None:
                    raise NotFound(f"firmware package {package_id} does not exist")
                active = await s.scalar(
                    select(Update.id).where(
                        Update.package_id == package_id, Update.state.not_in(TERMINAL_STATES)
                    )
                )
                if active is not None:
                    raise Conflict(
                        f"firmware package {package_id} is used by active update {active}; "
                        "cancel it first"
                    )
                view = PackageView.of(row)
                self._forget(package_id)
                await s.delete(row)
            self._forget(package_id)
            await self._drop_blob_if_unused(view.sha256)
        await self.bus.publish(PackageDeleted(view))
        return view

    def _forget(self, package_id: int) -> None:
        self._generation += 1
        self._views.pop(package_id, None)

    async def _drop_blob_if_unused(self, sha256: str) -> None:
        async with self.db.session() as s:
            users = await s.scalar(
                select(func.count())
                .select_from(FirmwarePackage)
                .where(FirmwarePackage.sha256 == sha256)
            )
        if not users:
            await self.blobs.delete(sha256)


def _check_id(package_id: int) -> None:
    # An id no database row can have: not found, rather than an overflow in the driver.
    if not is_row_id(package_id):
        raise NotFound(f"firmware package {package_id} does not exist")


async def _download(client: httpx.AsyncClient, url: str, upload: BlobUpload) -> str | None:
    """Stream ``url`` into ``upload``, resuming with Range after a broken connection."""
    content_type: str | None = None
    last_error = "no attempt made"
    for attempt in range(URL_ATTEMPTS):
        # Identity encoding: Range offsets must count the file's own bytes.
        headers = {"Accept-Encoding": "identity"}
        if upload.size:
            headers["Range"] = f"bytes={upload.size}-"
        try:
            async with client.stream("GET", url, headers=headers) as response:
                if response.status_code == 416 and upload.size:
                    # Everything was received before the connection broke.
                    return content_type
                if response.status_code == 200 and upload.size:
                    await upload.reset()  # the server ignored Range: start over
                elif response.status_code == 206:
                    start = _content_range_start(response.headers.get("content-range"))
                    if start != upload.size:
                        await upload.reset()
                        last_error = "server answered a range we did not ask for"
                        continue
                elif response.status_code != 200:
                    raise UpstreamFailed(
                        f"GET {url} answered {response.status_code} {response.reason_phrase}"
                    )
                content_type = response.headers.get("content-type", content_type)
                expected = _expected_total(response, upload.size)
                # Unsized: whatever arrived is written before an error can lose it.
                async for chunk in response.aiter_bytes():
                    await upload.write(chunk)
                if expected is not None and upload.size < expected:
                    last_error = f"connection closed at {upload.size} of {expected} bytes"
                    continue
                return content_type
        except httpx.HTTPError as exc:
            last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("download of %s interrupted (attempt %d): %s", url, attempt + 1, last_error)
            if attempt + 1 < URL_ATTEMPTS:
                await asyncio.sleep(min(URL_RETRY_DELAY_S * 2**attempt, 5.0))
    raise UpstreamFailed(f"could not download {url} after {URL_ATTEMPTS} attempts: {last_error}")


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*", value or "")
    return int(match.group(1)) if match else None


def _expected_total(response: httpx.Response, already: int) -> int | None:
    if response.status_code == 206:
        match = re.search(r"/(\d+)\s*$", response.headers.get("content-range", ""))
        if match:
            return int(match.group(1))
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and "content-encoding" not in response.headers:
        return already + int(length) if response.status_code == 206 else int(length)
    return None
