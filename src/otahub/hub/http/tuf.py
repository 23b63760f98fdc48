"""``/tuf/``: the signed repository metadata, public like any TUF repository.

No authentication: every file is signed, and what a device may install is
decided by those signatures, not by who may read them. Only the names a
TUF client asks for are served.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, Response

from otahub.hub.http.deps import Core
from otahub.hub.services.errors import NotFound

router = APIRouter(prefix="/tuf", tags=["signing"], include_in_schema=False)

_NAME = re.compile(r"(?:\d{1,12}\.(?:root|targets|snapshot)|timestamp)\.json")


@router.api_route("/{name}", methods=["GET", "HEAD"], response_class=Response)
async def metadata(name: str, request: Request, core: Core) -> Response:
    signing = core.firmware.signing
    if signing is None:
        raise NotFound("this hub serves no signed metadata (it runs without --signing-keys)")
    if _NAME.fullmatch(name) is None:
        raise NotFound(f"no metadata file {name!r}")
    try:
        data = (signing.directory / name).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no metadata file {name!r}") from None
    # timestamp.json changes in place; versioned names never do.
    cache = "no-cache" if name == "timestamp.json" else "public, max-age=31536000, immutable"
    body = b"" if request.method == "HEAD" else data
    return Response(
        body,
        media_type="application/json",
        headers={"Cache-Control": cache, "Content-Length": str(len(data))},
    )
