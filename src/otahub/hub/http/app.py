"""Builds the hub's ASGI application."""

from __future__ import annotations

from fastapi import FastAPI

from otahub import __version__


def create_http_app() -> FastAPI:
    app = FastAPI(title="otahub", version=__version__)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
