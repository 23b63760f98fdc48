"""Legacy thin-edge ``tedge/<child>/commands`` firmware API (the ``tedge-legacy`` dialect).

The protocol of thin-edge's ``c8y-firmware-plugin``, plus the file-transfer
path layout the request's ``url`` points into. Pure: the hub (gateway side)
builds requests and reads responses, the agent (child side) does the
opposite. Malformed messages are not exceptions here: upstream logs and
ignores them, so the parsers return :class:`Ignored` with the reason.

Mapping to canonical states (:func:`status_to_state`):

===============================  ===============  =====================================
legacy                           canonical        notes
===============================  ===============  =====================================
request published (attempt n)    ``sent``         the hub's own event
``executing``                    ``downloading``  optional; restarts the timeout
``successful``                   ``succeeded``
``failed``                       ``failed``       the child's ``reason`` is kept
timeout                          ``failed``       :func:`timeout_reason`
===============================  ===============  =====================================
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final

from otahub.protocols import _json
from otahub.protocols._json import JSONObject, Payload
from otahub.protocols.states import UpdateState


class TedgeLegacyError(ValueError):
    """Invalid input to a builder of the legacy API (bad child id, attempt …)."""


def _error(message: str) -> TedgeLegacyError:
    return TedgeLegacyError(message)


@dataclass(frozen=True)
class Ignored:
    """A message that is logged and ignored, with the reason why."""

    reason: str


OPERATION: Final = "firmware_update"
#: Requests are not retained and go out at QoS 1; responses use the child's choice.
REQUEST_RETAIN: Final = False
REQUEST_QOS: Final = 1
#: ``firmware.child.update.timeout`` default, in seconds.
DEFAULT_TIMEOUT_SECONDS: Final = 3600


def _check_child(child: str) -> None:
    if not child or any(c in child for c in "/+#\x00"):
        raise TedgeLegacyError(f"child id must be one non-empty topic level: {child!r}")


# --------------------------------------------------------------------------
# Topics


def request_topic(child: str) -> str:
    """``tedge/<child>/commands/req/firmware_update`` (not retained, QoS 1)."""
    _check_child(child)
    return f"tedge/{child}/commands/req/{OPERATION}"


def response_topic(child: str) -> str:
    """``tedge/<child>/commands/res/firmware_update``."""
    _check_child(child)
    return f"tedge/{child}/commands/res/{OPERATION}"


# every child's responses: what the requester subscribes to
RESPONSE_FILTER = f"tedge/+/commands/res/{OPERATION}"


def _topic_child(topic: str, direction: str) -> str | None:
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "tedge" or parts[2:] != ["commands", direction, OPERATION]:
        return None
    child = parts[1]
    if not child or any(c in child for c in "+#\x00"):
        return None
    return child


def parse_response_topic(topic: str) -> str | None:
    """The child of exactly ``tedge/<child>/commands/res/firmware_update``, else ``None``."""
    return _topic_child(topic, "res")


def parse_request_topic(topic: str) -> str | None:
    """The child of exactly ``tedge/<child>/commands/req/firmware_update``, else ``None``."""
    return _topic_child(topic, "req")


def subscribing_child(topic_filter: str) -> str | None:
    """The child whose request topic a subscription filter names, else ``None``.

    A child subscribing to ``tedge/<child>/commands/req/firmware_update`` (or
    a wildcard over it, such as ``tedge/<child>/commands/req/#``) is waiting
    for requests: the only sign of a legacy child the protocol offers. A
    filter with a wildcard in place of the child names no one.
    """
    parts = topic_filter.split("/")
    if len(parts) < 2 or parts[0] != "tedge" or parts[1] in ("", "+", "#"):
        return None
    wanted = ["commands", "req", OPERATION]
    rest = parts[2:]
    for i, level in enumerate(rest):
        if level == "#":
            return parts[1]
        if i >= len(wanted) or level not in ("+", wanted[i]):
            return None
    return parts[1] if len(rest) == len(wanted) else None


# --------------------------------------------------------------------------
# Request (gateway -> child)


@dataclass(frozen=True)
class FirmwareRequest:
    """A firmware update request. ``sha256`` is of the file content at ``url``."""

    id: str
    attempt: int
    name: str
    version: str
    sha256: str
    url: str

    def __post_init__(self) -> None:
        if not self.id:
            raise TedgeLegacyError("operation id must not be empty")
        if isinstance(self.attempt, bool) or self.attempt < 1:
            raise TedgeLegacyError(f"attempt must be an integer >= 1, got {self.attempt!r}")

    @property
    def is_resend(self) -> bool:
        """``attempt`` > 1: the same operation sent again, not a new job."""
        return self.attempt > 1

    def resend(self) -> FirmwareRequest:
        """The same request with ``attempt + 1`` and the same ``id``."""
        return FirmwareRequest(
            self.id, self.attempt + 1, self.name, self.version, self.sha256, self.url
        )

    def to_fields(self) -> JSONObject:
        """Fields in upstream order: id, attempt, name, version, sha256, url."""
        return {
            "id": self.id,
            "attempt": self.attempt,
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "url": self.url,
        }

    def to_payload(self) -> bytes:
        return _json.encode(self.to_fields())


def build_request(
    operation_id: str,
    *,
    name: str,
    version: str,
    sha256: str,
    url: str,
    attempt: int = 1,
) -> FirmwareRequest:
    """A new request; ``sha256`` is stored lowercase."""
    return FirmwareRequest(operation_id, attempt, name, version, sha256.lower(), url)


def _ignored_json(payload: Payload, what: str) -> JSONObject | Ignored:
    try:
        return _json.decode_object(payload, _error, what)
    except TedgeLegacyError as exc:
        return Ignored(str(exc))


def parse_request(payload: Payload) -> FirmwareRequest | Ignored:
    """The child's view of a request; anything malformed is :class:`Ignored`."""
    body = _ignored_json(payload, "firmware request")
    if isinstance(body, Ignored):
        return body
    texts: dict[str, str] = {}
    for key in ("id", "name", "version", "sha256", "url"):
        value = body.get(key)
        if not isinstance(value, str) or (key == "id" and not value):
            return Ignored(f"request {key} must be a string, got {_json.type_name(value)}")
        texts[key] = value
    attempt = body.get("attempt")
    if not _json.is_int(attempt) or attempt < 1:
        return Ignored(f"request attempt must be an integer >= 1, got {attempt!r}")
    return FirmwareRequest(
        texts["id"], attempt, texts["name"], texts["version"], texts["sha256"], texts["url"]
    )


# --------------------------------------------------------------------------
# Response (child -> gateway)


class LegacyStatus(StrEnum):
    """The three response statuses, lowercase and compared exactly."""

    EXECUTING = "executing"
    SUCCESSFUL = "successful"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self is not LegacyStatus.EXECUTING


@dataclass(frozen=True)
class FirmwareResponse:
    """``{"id":…,"status":…,"reason"?:…}``; extra fields are tolerated and dropped."""

    id: str
    status: LegacyStatus
    reason: str | None = None

    def to_payload(self) -> bytes:
        body: JSONObject = {"id": self.id, "status": self.status.value}
        if self.reason is not None:
            body["reason"] = self.reason
        return _json.encode(body)


def build_response(operation_id: str, status: LegacyStatus, reason: str | None = None) -> bytes:
    """The child's status message."""
    return FirmwareResponse(operation_id, status, reason).to_payload()


def parse_response(payload: Payload) -> FirmwareResponse | Ignored:
    """Apply the response parse rules.

    A JSON object with a string ``id`` and a ``status`` of exactly
    ``executing``, ``successful`` or ``failed``; ``reason`` absent, ``null`` or a
    string. Anything else is :class:`Ignored`.
    """
    body = _ignored_json(payload, "firmware response")
    if isinstance(body, Ignored):
        return body
    operation_id = body.get("id")
    if not isinstance(operation_id, str):
        return Ignored(f"response id must be a string, got {_json.type_name(operation_id)}")
    raw_status = body.get("status")
    if not isinstance(raw_status, str):
        return Ignored(f"response status must be a string, got {_json.type_name(raw_status)}")
    try:
        status = LegacyStatus(raw_status)
    except ValueError:
        return Ignored(f"unknown response status {raw_status!r}")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        return Ignored(f"response reason must be a string or null, got {_json.type_name(reason)}")
    return FirmwareResponse(operation_id, status, reason)


@dataclass(frozen=True)
class ChildResponse:
    """A response together with the child it came from (from the topic)."""

    child: str
    response: FirmwareResponse


def parse_response_message(topic: str, payload: Payload) -> ChildResponse | Ignored:
    """Parse topic and payload of a child response."""
    child = parse_response_topic(topic)
    if child is None:
        return Ignored(f"{topic!r} is not tedge/<child>/commands/res/firmware_update")
    response = parse_response(payload)
    if isinstance(response, Ignored):
        return response
    return ChildResponse(child, response)


class ResponseOutcome(Enum):
    """What the gateway does with a well-formed response."""

    APPLY = "apply"
    #: No operation for this (child, id): logged and ignored.
    UNKNOWN_OPERATION = "unknown operation"
    #: The operation already ended: later messages are ignored.
    ALREADY_FINISHED = "already finished"


def response_outcome(known: bool, last_status: LegacyStatus | None) -> ResponseOutcome:
    """Match on (child, id): ``known`` if such an operation exists, with its last status."""
    if not known:
        return ResponseOutcome.UNKNOWN_OPERATION
    if last_status is not None and last_status.is_terminal:
        return ResponseOutcome.ALREADY_FINISHED
    return ResponseOutcome.APPLY


def restarts_timeout(status: LegacyStatus) -> bool:
    """Every ``executing`` response restarts the operation's timer."""
    return status is LegacyStatus.EXECUTING


def timeout_reason(child: str, timeout_seconds: int, operation_id: str) -> str:
    """The failure text when the child does not answer in time."""
    return (
        f"Child device {child} did not respond within the timeout interval of "
        f"{timeout_seconds}sec. Operation ID={operation_id}"
    )


STATUS_TO_STATE: Final[Mapping[LegacyStatus, UpdateState]] = {
    LegacyStatus.EXECUTING: UpdateState.DOWNLOADING,
    LegacyStatus.SUCCESSFUL: UpdateState.SUCCEEDED,
    LegacyStatus.FAILED: UpdateState.FAILED,
}


def status_to_state(status: LegacyStatus) -> UpdateState:
    return STATUS_TO_STATE[status]


# --------------------------------------------------------------------------
# Attempt semantics


def operation_key(
    child: str, name: str, version: str, server_url: str
) -> tuple[str, str, str, str]:
    """A new request equal on this key to an in-progress one is a re-send, not a new job."""
    return (child, name, version, server_url)


class ChildAction(Enum):
    START = "start"
    #: Answer with the current status (``executing``, or the terminal one) and do not restart.
    REPORT = "report"


@dataclass(frozen=True)
class ChildDecision:
    action: ChildAction
    status: LegacyStatus | None = None


def child_decision(local_status: LegacyStatus | None) -> ChildDecision:
    """The child's reaction to a request, given what it knows about the request's ``id``.

    Unknown id: start the job, whatever the attempt. Known id (a re-send with
    ``attempt`` > 1, or a duplicate delivery), running or finished: repeat the
    current status and never restart the install.
    """
    if local_status is None:
        return ChildDecision(ChildAction.START)
    return ChildDecision(ChildAction.REPORT, local_status)


# --------------------------------------------------------------------------
# File transfer

FILE_TRANSFER_PREFIX: Final = "/te/v1/files/"
LEGACY_FILE_TRANSFER_PREFIX: Final = "/tedge/file-transfer/"
DEFAULT_HTTP_PORT: Final = 8000
INVALID_FILE_PATH: Final = "Invalid file path"

#: Extra response headers on the deprecated ``/tedge/file-transfer/`` paths.
LEGACY_DEPRECATION_HEADERS: Final[Mapping[str, str]] = {
    "deprecation": "true",
    "sunset": "Thu, 31 Dec 2025 23:59:59 GMT",
    "link": '</te/v1/files>; rel="deprecation"',
}


def cache_key(server_url: str) -> str:
    """``sha256(<server URL string>)`` in lowercase hex: it hashes the URL, not the content."""
    return hashlib.sha256(server_url.encode("utf-8")).hexdigest()


def file_path(child: str, key: str, *, legacy: bool = False) -> str:
    """``/te/v1/files/<child>/firmware_update/<key>`` (or the ``/tedge/file-transfer/`` form)."""
    _check_child(child)
    if not key or any(c in key for c in "/\x00") or key in (".", ".."):
        raise TedgeLegacyError(f"file key must be one path segment: {key!r}")
    prefix = LEGACY_FILE_TRANSFER_PREFIX if legacy else FILE_TRANSFER_PREFIX
    return f"{prefix}{child}/{OPERATION}/{key}"


def file_url(
    host: str, child: str, key: str, *, port: int = DEFAULT_HTTP_PORT, scheme: str = "http"
) -> str:
    """``http://<host>:<port>/te/v1/files/<child>/firmware_update/<key>``."""
    return f"{scheme}://{host}:{port}{file_path(child, key)}"


class InvalidFilePath(TedgeLegacyError):
    """A file-transfer path that escapes the root; answered with 404 ``Invalid file path``."""

    status = 404

    def __init__(self, path: str) -> None:
        super().__init__(f"{INVALID_FILE_PATH}: {path!r}")
        self.path = path


@dataclass(frozen=True)
class FileTransferPath:
    """A validated path below the file-transfer root."""

    segments: tuple[str, ...]
    legacy: bool = False

    @property
    def relative(self) -> str:
        """The path below the root, as upstream prints it in its 404 message."""
        return "/".join(self.segments)

    @property
    def firmware_entry(self) -> tuple[str, str] | None:
        """``(child, key)`` for ``<child>/firmware_update/<key>``, else ``None``."""
        if len(self.segments) == 3 and self.segments[1] == OPERATION:
            return self.segments[0], self.segments[2]
        return None


def parse_file_path(path: str) -> FileTransferPath | None:
    """Resolve a request path (already percent-decoded) below the file-transfer root.

    ``None`` when the path is under neither prefix. ``.`` segments, empty
    segments and a trailing ``/`` are dropped; ``..`` steps up, and stepping
    above the root raises :class:`InvalidFilePath`.
    """
    if path.startswith(FILE_TRANSFER_PREFIX):
        rest, legacy = path[len(FILE_TRANSFER_PREFIX) :], False
    elif path.startswith(LEGACY_FILE_TRANSFER_PREFIX):
        rest, legacy = path[len(LEGACY_FILE_TRANSFER_PREFIX) :], True
    else:
        return None
    if "\x00" in rest:
        raise InvalidFilePath(rest)
    segments: list[str] = []
    for segment in rest.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise InvalidFilePath(rest)
            segments.pop()
            continue
        segments.append(segment)
    return FileTransferPath(tuple(segments), legacy)


def file_not_found_message(path: FileTransferPath) -> str:
    """``File not found: "<path>"``, the 404 body for a missing file or a directory."""
    return f'File not found: "{path.relative}"'


class FileMethod(StrEnum):
    PUT = "PUT"
    GET = "GET"
    DELETE = "DELETE"


def file_transfer_status(method: FileMethod, *, exists: bool, is_dir: bool) -> int:
    """Status of a file-transfer request given what the target is.

    PUT: 201 (parents created, files replaced), 409 onto a directory. GET: 200
    for a file, 404 for a missing file or a directory. DELETE: 202 also when
    missing, 404 for a directory. I/O errors are the caller's 500.
    """
    if method is FileMethod.PUT:
        return 409 if is_dir else 201
    if method is FileMethod.GET:
        return 200 if exists and not is_dir else 404
    return 404 if is_dir else 202
