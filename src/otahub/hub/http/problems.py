"""Errors as RFC 9457 ``application/problem+json`` documents."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from otahub.hub.http.json_errors import line_and_column, member_at
from otahub.hub.services.errors import ServiceError

log = logging.getLogger("otahub.hub.http")

PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return problem(exc.status, exc.detail, title=exc.title, **exc.extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            errors.append(await _malformed_json(request, e))
        else:
            errors.append(
                {"field": _location(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
            )
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return problem(422, detail, title="Invalid request", errors=errors)


async def _malformed_json(request: Request, error: Any) -> dict[str, str]:
    """A JSON syntax error named by the member it is in, with line and column."""
    loc = error.get("loc", ())
    offset = loc[-1] if loc and isinstance(loc[-1], int) else None
    why = str((error.get("ctx") or {}).get("error") or "not valid JSON")
    try:
        text = (await request.body()).decode("utf-8", "replace")
    except Exception:  # the body is gone (already streamed): say what is known
        text = ""
    if offset is None or not text:
        return {"field": "body", "message": f"malformed JSON: {why}"}
    line, column = line_and_column(text, offset)
    member = member_at(text, offset)
    return {
        "field": member or "body",
        "message": f"malformed JSON at line {line}, column {column}: {why}",
    }


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem(exc.status_code, detail, headers=dict(exc.headers or {}))


async def _disconnected(request: Request, exc: Exception) -> JSONResponse:
    # The client went away mid-upload; the partial blob is already discarded.
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return problem(400, "the request body ended early (client disconnected)")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal error; the hub log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _disconnected)
    app.add_exception_handler(Exception, _unexpected)
