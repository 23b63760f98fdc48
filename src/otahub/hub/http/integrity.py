"""``POST /api/v1/firmware/verify``: scrub the firmware store."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from otahub.hub.http.deps import Core
from otahub.hub.services.errors import Invalid
from otahub.hub.services.integrity import ScrubStatus

router = APIRouter(prefix="/firmware", tags=["firmware"])


class VerifyRequest(BaseModel):
    all: bool = Field(False, description="every package")
    ids: list[int] = Field(default_factory=list, description="these packages")


class VerifyResult(BaseModel):
    id: int
    title: str
    version: str
    size: int
    sha256: str
    status: ScrubStatus = Field(
        description="ok; corrupt: the stored bytes hash to actual_sha256; missing: no file"
    )
    actual_sha256: str | None


@router.post("/verify")
async def verify_firmware(body: VerifyRequest, core: Core) -> list[VerifyResult]:
    """Read every byte of the packages again and compare with their SHA-256.

    A corrupt package is no longer served, and its active updates fail. The
    answer is 200 whatever it finds; each result says what it found.
    """
    if body.all == bool(body.ids):
        raise Invalid("give either package ids or all, not both")
    results = await core.integrity.scrub(None if body.all else body.ids)
    return [
        VerifyResult(
            id=r.package.id,
            title=r.package.title,
            version=r.package.version,
            size=r.package.size,
            sha256=r.package.sha256,
            status=r.status,
            actual_sha256=r.actual_sha256,
        )
        for r in results
    ]
