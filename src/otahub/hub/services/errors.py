"""Errors the services raise; the HTTP layer maps each to one status code."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A request the hub refuses, with a message meant for the person who sent it.

    ``extra`` holds machine-readable members for the problem document (e.g. the
    ids of the updates that block a delete).
    """

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class Invalid(ServiceError):
    status = 422
    title = "Invalid request"


class UpstreamFailed(ServiceError):
    """A URL the hub was asked to fetch could not be downloaded."""

    status = 502
    title = "Download failed"
