"""Access to the hub's services from request handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from otahub.hub.core import HubCore


# async: FastAPI runs a plain function dependency in a worker thread, a thread
# hop on every request for what is an attribute lookup.
async def _core(request: Request) -> HubCore:
    core: HubCore = request.app.state.core
    return core


Core = Annotated[HubCore, Depends(_core)]
