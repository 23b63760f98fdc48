"""``/api/v1/firmware``: the firmware repository."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from otahub.hub.core import HubCore
from otahub.hub.http.deps import Core
from otahub.hub.http.direct import confirm
from otahub.hub.http.files import file_response
from otahub.hub.http.ids import RowId
from otahub.hub.http.multipart import PartData, PartEnd, PartStart, parts
from otahub.hub.services.errors import Invalid, NotFound
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.views import PackageView
from otahub.hub.store.blobs import BlobUpload

router = APIRouter(prefix="/firmware", tags=["firmware"])

Kind = Literal["firmware", "software"]
_MAX_FIELD = 64 * 1024  # a metadata form field, never the file
#: The signed targets metadata lists every package: larger than the other fields.
_MAX_TARGETS = 32 * 1024 * 1024
TARGETS_FIELD = "targets"
_ALGORITHMS = (
    "ThingsBoard's fw_checksum_algorithm for the package: "
    "MD5, SHA256 (default), SHA384, SHA512, CRC32, MURMUR3_32 or MURMUR3_128"
)


class Checksums(BaseModel):
    MD5: str
    SHA256: str
    SHA384: str
    SHA512: str
    CRC32: str = Field(description="ThingsBoard encoding: little-endian bytes as hex")
    MURMUR3_32: str = Field(description="ThingsBoard encoding: little-endian bytes as hex")
    MURMUR3_128: str


class Package(BaseModel):
    id: int
    title: str
    version: str
    kind: Kind
    device_type: str | None
    filename: str | None
    content_type: str
    source_url: str | None
    size: int
    sha256: str
    checksums: Checksums
    checksum_algorithm: str = Field(
        description="fw_checksum_algorithm sent to ThingsBoard devices (a device's own "
        "setting overrides it)"
    )
    created_at: datetime
    content_url: str

    @classmethod
    def of(cls, view: PackageView) -> Package:
        return cls(
            id=view.id,
            title=view.title,
            version=view.version,
            kind=cast(Kind, view.kind),
            device_type=view.device_type,
            filename=view.filename,
            content_type=view.content_type,
            source_url=view.source_url,
            size=view.size,
            sha256=view.sha256,
            checksums=Checksums(**{a.value: v for a, v in view.checksums.items()}),
            checksum_algorithm=view.checksum_algorithm.value,
            created_at=view.created_at,
            content_url=f"/api/v1/firmware/{view.id}/content",
        )


class ImportRequest(BaseModel):
    url: str = Field(description="http(s) URL the hub downloads once and then serves")
    title: str
    version: str
    kind: Kind = "firmware"
    device_type: str | None = None
    filename: str | None = None
    checksum_algorithm: str | None = Field(None, description=_ALGORITHMS)


_UPLOAD_DOC = {
    "requestBody": {
        "description": (
            "The file, either as the raw body (metadata in the query) or as "
            "multipart/form-data with a `file` part and optional `title`, `version`, "
            "`kind`, `device_type`, `checksum_algorithm` fields. Streams; any size except 0. "
            "A `targets` field before the file (TUF targets metadata signed by the "
            "publisher, listing `<title>/<version>`) makes it a signed package: the hub "
            "checks the signature against its root and the file against the signed length "
            "and hashes (422 otherwise; 409 when the metadata is not newer than the hub's)."
        ),
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "title": {"type": "string"},
                        "version": {"type": "string"},
                        "kind": {"type": "string", "enum": ["firmware", "software"]},
                        "device_type": {"type": "string"},
                        "checksum_algorithm": {"type": "string", "description": _ALGORITHMS},
                        "targets": {"type": "string", "description": "signed targets metadata"},
                    },
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post("", status_code=201, openapi_extra=_UPLOAD_DOC)
async def upload_firmware(
    request: Request,
    core: Core,
    title: Annotated[str | None, Query()] = None,
    version: Annotated[str | None, Query()] = None,
    kind: Annotated[Kind | None, Query()] = None,
    device_type: Annotated[str | None, Query()] = None,
    filename: Annotated[str | None, Query()] = None,
    checksum_algorithm: Annotated[str | None, Query(description=_ALGORITHMS)] = None,
) -> Package:
    """Upload a package. Same title and version twice: 409; an empty file: 422."""
    fields: dict[str, str | None] = {
        "title": title,
        "version": version,
        "kind": kind,
        "device_type": device_type,
        "filename": filename,
        "checksum_algorithm": checksum_algorithm,
    }
    content_type = request.headers.get("content-type", "application/octet-stream")
    if content_type.lower().startswith("multipart/"):
        view = await upload_multipart(request, core, fields)
    else:
        meta = _meta(fields, content_type=content_type)
        view = await core.firmware.upload(meta, request.stream())
    return Package.of(view)


def _meta(fields: dict[str, str | None], *, content_type: str | None = None) -> PackageMeta:
    missing = [name for name in ("title", "version") if not fields.get(name)]
    if missing:
        raise Invalid(f"missing {' and '.join(missing)} (query parameters or form fields)")
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in ("", "application/x-www-form-urlencoded"):
        # What curl --data-binary sends unless told otherwise: not the file's type.
        ctype = "application/octet-stream"
    return PackageMeta(
        title=fields["title"] or "",
        version=fields["version"] or "",
        kind=fields.get("kind") or "firmware",
        device_type=fields.get("device_type") or None,
        filename=fields.get("filename") or None,
        content_type=ctype,
        checksum_algorithm=fields.get("checksum_algorithm") or None,
    )


def _is_file(part: PartStart) -> bool:
    return part.filename is not None or part.name == "file"


async def upload_multipart(
    request: Request, core: Core, fields: dict[str, str | None]
) -> PackageView:
    upload: BlobUpload | None = None
    file_type: str | None = None
    current: PartStart | None = None
    value = bytearray()
    targets: bytes | None = None
    try:
        async for event in parts(request.stream(), request.headers["content-type"]):
            if isinstance(event, PartStart):
                current, value = event, bytearray()
                if _is_file(event):
                    if upload is not None:
                        raise Invalid("send exactly one file part")
                    if fields.get("title") and fields.get("version"):
                        await core.firmware.ensure_new(_meta(fields))
                        if targets is not None:
                            # A bad signature is refused before the file is received.
                            core.firmware.stage_targets(_meta(fields), targets)
                    upload = await core.firmware.begin_upload()
                    file_type = event.content_type
                    if event.filename and not fields.get("filename"):
                        fields["filename"] = event.filename
            elif isinstance(event, PartData) and current is not None:
                if _is_file(current):
                    assert upload is not None
                    await upload.write(event.data)
                else:
                    value += event.data
                    limit = _MAX_TARGETS if current.name == TARGETS_FIELD else _MAX_FIELD
                    if len(value) > limit:
                        raise Invalid(f"form field {current.name!r} is too large")
            elif isinstance(event, PartEnd) and current is not None:
                # Query parameters win over form fields of the same name.
                if not _is_file(current) and current.name == TARGETS_FIELD:
                    targets = bytes(value)
                elif not _is_file(current) and current.name in fields and not fields[current.name]:
                    fields[current.name] = value.decode("utf-8", "replace")
                current = None
        if upload is None:
            raise Invalid("multipart upload without a file part")
        if current is not None:
            raise Invalid("multipart body ended inside a part")
        return await core.firmware.finish_upload(
            _meta(fields, content_type=file_type), upload, targets=targets
        )
    finally:
        if upload is not None:
            await upload.abort()


@router.post("/import", status_code=201)
async def import_firmware(body: ImportRequest, core: Core) -> Package:
    """Register a package by URL: the hub downloads it once (resuming if cut) and serves it."""
    meta = PackageMeta(
        title=body.title,
        version=body.version,
        kind=body.kind,
        device_type=body.device_type,
        filename=body.filename,
        checksum_algorithm=body.checksum_algorithm,
    )
    return Package.of(await core.firmware.register_url(meta, body.url))


@router.get("")
async def list_firmware(
    core: Core,
    kind: Annotated[Kind | None, Query()] = None,
    title: Annotated[str | None, Query()] = None,
) -> list[Package]:
    return [Package.of(v) for v in await core.firmware.list(kind=kind, title=title)]


@router.get("/{package_id}")
async def get_firmware(package_id: RowId, core: Core) -> Package:
    return Package.of(await core.firmware.get(package_id))


@router.delete("/{package_id}", status_code=204)
async def delete_firmware(package_id: RowId, core: Core) -> Response:
    """Delete a package; 409 while an active update uses it."""
    await core.firmware.delete(package_id)
    return Response(status_code=204)


_CONTENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the whole file"},
    206: {"description": "one byte range"},
    304: {"description": "If-None-Match matched the ETag (the SHA-256)"},
    416: {"description": "range not satisfiable"},
    500: {"description": "the stored bytes no longer match the SHA-256"},
}


#: The content route's name among the listener's direct routes (app.py).
CONTENT_ROUTE = "firmware content"


# One route per method: each gets an operation id of its own in the OpenAPI document.
@router.get("/{package_id}/content", response_class=Response, responses=_CONTENT_RESPONSES)
@router.head("/{package_id}/content", response_class=Response, responses=_CONTENT_RESPONSES)
async def firmware_content(package_id: RowId, request: Request, core: Core) -> Response:
    """The package's bytes: single Range, HEAD, strong ETag (its SHA-256)."""
    confirm(request, CONTENT_ROUTE)
    return await content(core, request, package_id)


async def content(core: HubCore, request: Request, package_id: int) -> Response:
    """The content route's answer; also run by the listener without FastAPI (``app.py``)."""
    view = await core.firmware.get(package_id)
    path = await core.integrity.servable(view.sha256)  # 500 once its bytes changed
    if path is None:
        raise NotFound(f"the content of firmware package {package_id} is missing from the store")
    try:
        return file_response(
            request,
            path,
            etag=view.sha256,
            media_type=view.content_type,
            filename=view.filename,
            size=view.size,
        )
    except FileNotFoundError:
        raise NotFound(
            f"the content of firmware package {package_id} is missing from the store"
        ) from None
