"""``GET /metrics``: the Prometheus text exposition.

Mounted with the admin API, behind the same bearer token (Prometheus sends it
with ``authorization: {credentials_file: ...}``); with ``--admin-port`` only
on the admin listener, never on the port devices reach.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from otahub.hub.http.deps import Core

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "the metrics"}},
)
async def metrics(core: Core) -> Response:
    return Response(await core.metrics.render(), media_type=CONTENT_TYPE_LATEST)
