"""``/api/v1/signing``: what the publisher's tools need from the hub's metadata."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from otahub.hub.http.deps import Core
from otahub.hub.services.errors import NotFound
from otahub.hub.services.signing import SigningService

router = APIRouter(prefix="/signing", tags=["signing"])


class RootRotation(BaseModel):
    root: dict[str, Any] = Field(description="the next root metadata version")
    targets: dict[str, Any] | None = Field(
        None, description="targets metadata signed by the new root's targets key(s)"
    )


class RotationResult(BaseModel):
    root_version: int


def _signing(core: Core) -> SigningService:
    if core.firmware.signing is None:
        raise NotFound("this hub keeps no signed metadata (it runs without --signing-keys)")
    return core.firmware.signing


@router.get("/targets", response_class=Response)
async def current_targets(core: Core) -> Response:
    """The current targets metadata, to add a package to and sign again."""
    data = await _signing(core).current_targets()
    return Response(data, media_type="application/json")


@router.post("/root")
async def rotate_root(body: RootRotation, core: Core) -> RotationResult:
    """Install the next root version (signed by the current and the new root keys)."""
    signing = _signing(core)
    targets = None if body.targets is None else json.dumps(body.targets).encode()
    version = await signing.add_root(json.dumps(body.root).encode(), targets)
    return RotationResult(root_version=version)
