"""thin-edge.io v1 ``te/`` API for firmware updates (the ``thin-edge`` dialect).

Pure protocol layer shared by the hub (requester) and the agent (executor):
entity topic ids and the ``te/`` topic scheme, entity registration, the
``firmware_update`` capability, the ``twin/firmware`` current version, and the
command payload with its status values. The legacy ``tedge/<child>/commands``
API lives in :mod:`otahub.protocols.tedge_legacy`.

Every message of this dialect is retained and sent at QoS 1. An empty
retained payload clears a topic; it is never a command.

Mapping of command statuses to canonical states (:func:`status_to_state`):

===========================================  =================  ==============================
``status``                                   canonical          notes
===========================================  =================  ==============================
``init``                                     ``sent``           the hub published the command
``scheduled``                                ``sent``           accepted, not started
``executing``                                ``downloading``    the first executor reply
custom ``downloading``, ``download``         ``downloading``
custom ``downloaded``                        ``downloaded``
custom ``verified``                          ``verified``
custom ``installing``, ``install``,          ``installing``     the ESP32 client reports
``restart``, ``waiting_for_restart``,                           ``verifying`` after rebooting
``verify``, ``verifying``, ``commit``                           into the new image
any other custom status                      ``downloading``    recorded verbatim; the device
                                                                is working on it
``successful``                               ``succeeded``      cross-check ``twin/firmware``
``failed``                                   ``failed``         ``reason``, ``"Unknown reason"``
                                                                when absent
===========================================  =================  ==============================

Custom statuses never move an update backwards: the caller applies a mapped
state only when it lies ahead of the current one.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final

from otahub.protocols import _json
from otahub.protocols._json import JSONObject, JSONValue, Payload
from otahub.protocols.states import UpdateState


class ThinEdgeError(ValueError):
    """A topic or payload that breaks the thin-edge ``te/`` API."""


def _error(message: str) -> ThinEdgeError:
    return ThinEdgeError(message)


#: Every message of this dialect is retained and sent at QoS 1.
RETAIN: Final = True
QOS: Final = 1

TOPIC_ROOT: Final = "te"
OPERATION: Final = "firmware_update"
CHANNEL_CATEGORIES: Final = frozenset({"m", "e", "a", "cmd", "twin", "config", "status", "signal"})
#: Prefix of the command ids otahub creates; a co-located c8y mapper ignores them.
COMMAND_ID_PREFIX: Final = "otahub"
#: The capability payload.
CAPABILITY_PAYLOAD: Final = b"{}"
#: Upstream's default when a ``failed`` command carries no reason.
UNKNOWN_REASON: Final = "Unknown reason"


def _check_level(name: str, value: str) -> None:
    if not value or any(c in value for c in "/+#\x00"):
        raise ThinEdgeError(f"{name} must be one non-empty topic level without / + #: {value!r}")


# --------------------------------------------------------------------------
# Entity topic ids


@dataclass(frozen=True)
class EntityTopicId:
    """``device/<device_id>/service/<service_id>``, unused segments left empty.

    The main device is ``device/main//``; child ``child03`` is ``device/child03//``.
    """

    device_id: str
    service_id: str | None = None

    def __post_init__(self) -> None:
        _check_level("device id", self.device_id)
        if self.service_id is not None:
            _check_level("service id", self.service_id)

    def __str__(self) -> str:
        if self.service_id is None:
            return f"device/{self.device_id}//"
        return f"device/{self.device_id}/service/{self.service_id}"

    @property
    def is_main(self) -> bool:
        return self.device_id == "main" and self.service_id is None

    @classmethod
    def parse(cls, text: str) -> EntityTopicId:
        """Parse ``device/child01//`` (e.g. an ``@parent`` value)."""
        entity = _entity_from_segments(text.split("/"))
        if entity is None:
            raise ThinEdgeError(f"{text!r} is not an entity topic id device/<id>/service/<id>")
        return entity


MAIN_DEVICE: Final = EntityTopicId("main")


def _entity_from_segments(segments: list[str]) -> EntityTopicId | None:
    if len(segments) != 4 or segments[0] != "device" or not segments[1]:
        return None
    if any(c in s for s in segments for c in "+#\x00"):
        return None
    if segments[2:] == ["", ""]:
        return EntityTopicId(segments[1])
    if segments[2] == "service" and segments[3]:
        return EntityTopicId(segments[1], segments[3])
    return None


def entity_topic(entity: EntityTopicId) -> str:
    """``te/device/child03//``: where the entity registers."""
    return f"{TOPIC_ROOT}/{entity}"


def capability_topic(entity: EntityTopicId) -> str:
    """``te/device/child03///cmd/firmware_update`` (no ``<cmd_id>`` level)."""
    return f"{TOPIC_ROOT}/{entity}/cmd/{OPERATION}"


def command_topic(entity: EntityTopicId, cmd_id: str) -> str:
    """``te/device/child03///cmd/firmware_update/<cmd_id>``."""
    _check_level("command id", cmd_id)
    return f"{capability_topic(entity)}/{cmd_id}"


def command_filter(entity: EntityTopicId) -> str:
    """What an executor subscribes to: ``…/cmd/firmware_update/+``."""
    return f"{capability_topic(entity)}/+"


def twin_topic(entity: EntityTopicId) -> str:
    """``te/device/child03///twin/firmware``: the installed firmware."""
    return f"{TOPIC_ROOT}/{entity}/twin/firmware"


def make_command_id(unique: str, prefix: str = COMMAND_ID_PREFIX) -> str:
    """``<prefix>-<unique>``, validated as a single topic level."""
    cmd_id = f"{prefix}-{unique}"
    _check_level("command id", cmd_id)
    return cmd_id


def is_own_command(cmd_id: str, prefix: str = COMMAND_ID_PREFIX) -> bool:
    """True for ids this requester created; others belong to another requester."""
    return cmd_id.startswith(f"{prefix}-")


def command_id_for(update_id: int, prefix: str = COMMAND_ID_PREFIX) -> str:
    """``<prefix>-<update id>-<6 hex>``: the update id leads, so that any hub on the
    same database can tell which update a command (and a status on it) belongs to."""
    return make_command_id(f"{update_id}-{secrets.token_hex(3)}", prefix)


def update_id_of(cmd_id: str, prefix: str = COMMAND_ID_PREFIX) -> int | None:
    """The update id a ``command_id_for`` id leads with; None for any other id."""
    if not is_own_command(cmd_id, prefix):
        return None
    raw = cmd_id[len(prefix) + 1 :].partition("-")[0]
    return int(raw) if raw.isascii() and raw.isdigit() else None


class TopicKind(Enum):
    REGISTRATION = "registration"
    CAPABILITY = "capability"
    COMMAND = "command"
    TWIN = "twin"
    HEALTH = "health"


@dataclass(frozen=True)
class FirmwareTopic:
    """A ``te/`` topic relevant to firmware updates; ``cmd_id`` only for commands."""

    kind: TopicKind
    entity: EntityTopicId
    cmd_id: str | None = None


def parse_topic(topic: str) -> FirmwareTopic | None:
    """Classify a ``te/`` topic; ``None`` when it is none of the four kinds.

    A command topic is exactly ``te/<4-segment entity>/cmd/firmware_update/<cmd_id>``;
    without ``<cmd_id>`` it is the capability.
    """
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != TOPIC_ROOT:
        return None
    entity = _entity_from_segments(parts[1:5])
    if entity is None:
        return None
    channel = parts[5:]
    if not channel:
        return FirmwareTopic(TopicKind.REGISTRATION, entity)
    if channel == ["cmd", OPERATION]:
        return FirmwareTopic(TopicKind.CAPABILITY, entity)
    if len(channel) == 3 and channel[:2] == ["cmd", OPERATION] and channel[2]:
        return FirmwareTopic(TopicKind.COMMAND, entity, channel[2])
    if channel == ["twin", "firmware"]:
        return FirmwareTopic(TopicKind.TWIN, entity)
    if channel == ["status", "health"]:
        return FirmwareTopic(TopicKind.HEALTH, entity)
    return None


def subscribing_device(topic_filter: str) -> str | None:
    """The device whose firmware commands a subscription filter names, else ``None``.

    A child subscribing to ``te/device/<id>///cmd/firmware_update/+`` (or a
    wildcard over it: ``…///cmd/+/+`` like the ESP32 client, ``te/device/<id>/#``)
    waits for commands. A wildcard in place of the device id names no one.
    """
    parts = topic_filter.split("/")
    if len(parts) < 3 or parts[:2] != [TOPIC_ROOT, "device"] or parts[2] in ("", "+", "#"):
        return None
    command = ["", "", "cmd", OPERATION, "any-id"]
    rest = parts[3:]
    for i, level in enumerate(rest):
        if level == "#":
            return parts[2]
        if i >= len(command) or level not in ("+", command[i]):
            return None
    return parts[2] if len(rest) == len(command) else None


#: The service whose health is the device's (upstream's default ``@health``).
DEFAULT_HEALTH_SERVICE: Final = "tedge-agent"


def health_service(registration: Mapping[str, JSONValue] | None) -> str:
    """Which service's health stands for a device: its registration's ``@health``, or the agent."""
    value = None if registration is None else registration.get("@health")
    if isinstance(value, str) and value:
        # ``@health`` names an entity (``device/child01/service/agent``) or a service id
        return value.rstrip("/").rsplit("/", 1)[-1]
    return DEFAULT_HEALTH_SERVICE


def parse_health(payload: Payload) -> bool | None:
    """``status/health``: True for ``up``, False for anything else, None when cleared."""
    if len(payload) == 0:
        return None
    body = _json.decode_object(payload, _error, "health status")
    return body.get("status") == "up"


# --------------------------------------------------------------------------
# Registration, capability, twin


class EntityType(StrEnum):
    CHILD_DEVICE = "child-device"
    DEVICE = "device"
    SERVICE = "service"


def _optional_str(body: Mapping[str, JSONValue], key: str, what: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ThinEdgeError(f"{what} {key} must be a string, got {_json.type_name(value)}")


@dataclass(frozen=True)
class Registration:
    """An entity registration; ``fields`` keeps the whole message."""

    entity_type: EntityType
    parent: EntityTopicId | None
    external_id: str | None
    name: str | None
    device_type: str | None
    fields: Mapping[str, JSONValue]


def parse_registration(payload: Payload) -> Registration | None:
    """Parse the retained message on ``te/<entity>``; ``None`` when cleared (deregistered).

    ``@parent`` absent means an immediate child of the main device.
    """
    if len(payload) == 0:
        return None
    body = _json.decode_object(payload, _error, "registration")
    raw_type = body.get("@type")
    try:
        entity_type = EntityType(raw_type) if isinstance(raw_type, str) else None
    except ValueError:
        entity_type = None
    if entity_type is None:
        raise ThinEdgeError(
            f"registration @type must be child-device, device or service: {raw_type!r}"
        )
    parent = _optional_str(body, "@parent", "registration")
    return Registration(
        entity_type=entity_type,
        parent=None if parent is None else EntityTopicId.parse(parent),
        external_id=_optional_str(body, "@id", "registration"),
        name=_optional_str(body, "name", "registration"),
        device_type=_optional_str(body, "type", "registration"),
        fields=body,
    )


def build_registration(
    entity_type: EntityType = EntityType.CHILD_DEVICE,
    *,
    name: str | None = None,
    device_type: str | None = None,
    parent: EntityTopicId | None = None,
    external_id: str | None = None,
) -> bytes:
    """A registration message (seed 000, step 1)."""
    body: JSONObject = {"@type": entity_type.value}
    if parent is not None:
        body["@parent"] = str(parent)
    if external_id is not None:
        body["@id"] = external_id
    if name is not None:
        body["name"] = name
    if device_type is not None:
        body["type"] = device_type
    return _json.encode(body)


def parse_capability(payload: Payload) -> bool:
    """True when announced (a JSON object, normally ``{}``); False when withdrawn (empty)."""
    if len(payload) == 0:
        return False
    _json.decode_object(payload, _error, "capability")
    return True


@dataclass(frozen=True)
class FirmwareTwin:
    """The installed firmware, ``{"name","version"}`` plus an optional ``url``."""

    version: str
    name: str | None = None
    url: str | None = None


def parse_twin(payload: Payload) -> FirmwareTwin | None:
    """Parse ``twin/firmware``; ``None`` when cleared. ``version`` is required."""
    if len(payload) == 0:
        return None
    body = _json.decode_object(payload, _error, "firmware twin")
    version = body.get("version")
    if not isinstance(version, str):
        raise ThinEdgeError(
            f"firmware twin version must be a string, got {_json.type_name(version)}"
        )
    return FirmwareTwin(
        version=version,
        name=_optional_str(body, "name", "firmware twin"),
        url=_optional_str(body, "url", "firmware twin"),
    )


def build_twin(name: str, version: str, url: str | None = None) -> bytes:
    """``{"name":…,"version":…}`` (plus ``url`` when given)."""
    body: JSONObject = {"name": name, "version": version}
    if url is not None:
        body["url"] = url
    return _json.encode(body)


# --------------------------------------------------------------------------
# Commands


class CommandStatus(StrEnum):
    """The statuses with a defined meaning; any other string is a custom, intermediate one."""

    INIT = "init"
    SCHEDULED = "scheduled"
    EXECUTING = "executing"
    SUCCESSFUL = "successful"
    FAILED = "failed"


TERMINAL_STATUSES: Final = frozenset({CommandStatus.SUCCESSFUL, CommandStatus.FAILED})

_SHA256_RE: Final = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class FirmwareCommand:
    """A ``firmware_update`` command, every received field kept in order.

    The typed properties read the well-known fields; :meth:`with_status`
    returns the same payload with ``status`` replaced, which is what an
    executor must publish back. ``sha256``, ``size`` and ``progress`` are
    otahub's extra fields; upstream executors echo them untouched.
    """

    fields: Mapping[str, JSONValue]

    def __post_init__(self) -> None:
        fields = dict(self.fields)
        object.__setattr__(self, "fields", fields)
        status = fields.get("status", CommandStatus.INIT.value)
        if not isinstance(status, str) or not status:
            raise ThinEdgeError(f"command status must be a non-empty string, got {status!r}")
        for key in ("name", "version", "remoteUrl", "tedgeUrl", "reason", "logPath"):
            _optional_str(fields, key, "command")
        sha256 = _optional_str(fields, "sha256", "command")
        if sha256 is not None and not _SHA256_RE.fullmatch(sha256):
            raise ThinEdgeError(f"command sha256 must be 64 hex digits, got {sha256!r}")
        size = fields.get("size")
        if size is not None and not (_json.is_int(size) and size >= 0):
            raise ThinEdgeError(f"command size must be a non-negative integer, got {size!r}")

    def _text(self, key: str) -> str | None:
        value = self.fields.get(key)
        return value if isinstance(value, str) else None

    @property
    def status(self) -> str:
        """The status string; a missing status is ``init``."""
        return self._text("status") or CommandStatus.INIT.value

    @property
    def known_status(self) -> CommandStatus | None:
        """The status if it is one of the five defined ones; ``None`` for custom statuses."""
        try:
            return CommandStatus(self.status)
        except ValueError:
            return None

    @property
    def is_terminal(self) -> bool:
        return self.known_status in TERMINAL_STATUSES

    @property
    def name(self) -> str | None:
        return self._text("name")

    @property
    def version(self) -> str | None:
        return self._text("version")

    @property
    def remote_url(self) -> str | None:
        return self._text("remoteUrl")

    @property
    def tedge_url(self) -> str | None:
        return self._text("tedgeUrl")

    @property
    def reason(self) -> str | None:
        return self._text("reason")

    @property
    def log_path(self) -> str | None:
        return self._text("logPath")

    @property
    def sha256(self) -> str | None:
        value = self._text("sha256")
        return None if value is None else value.lower()

    @property
    def size(self) -> int | None:
        value = self.fields.get("size")
        return value if _json.is_int(value) else None

    @property
    def progress(self) -> float | None:
        """otahub's optional 0..100 progress; anything else is ignored (and still echoed)."""
        value = self.fields.get("progress")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if 0 <= value <= 100 else None

    @property
    def failure_reason(self) -> str | None:
        """For ``failed``: ``reason``, or upstream's ``"Unknown reason"``."""
        if self.known_status is not CommandStatus.FAILED:
            return None
        return self.reason or UNKNOWN_REASON

    @property
    def download_urls(self) -> tuple[str, ...]:
        """Where to fetch the image: ``tedgeUrl`` first, ``remoteUrl`` as the fallback."""
        return tuple(url for url in (self.tedge_url, self.remote_url) if url)

    def check_executable(self) -> None:
        """Raise :class:`ThinEdgeError` unless name, version and a URL are present."""
        missing = [key for key in ("name", "version") if not self._text(key)]
        if not self.download_urls:
            missing.append("tedgeUrl or remoteUrl")
        if missing:
            raise ThinEdgeError(f"command cannot be executed, missing: {', '.join(missing)}")

    def with_status(
        self,
        status: CommandStatus | str,
        *,
        reason: str | None = None,
        progress: float | None = None,
    ) -> FirmwareCommand:
        """The same payload with ``status`` replaced (and ``reason`` set on failure).

        ``reason`` is only written for ``failed``; ``progress`` (0..100) only when given.
        """
        fields = dict(self.fields)
        fields["status"] = str(status)
        if str(status) == CommandStatus.FAILED:
            fields["reason"] = reason or self.reason or UNKNOWN_REASON
        elif reason is not None:
            raise ThinEdgeError("a reason belongs to the failed status only")
        if progress is not None:
            if not 0 <= progress <= 100:
                raise ThinEdgeError(f"progress must be within 0..100, got {progress}")
            fields["progress"] = progress
        return FirmwareCommand(fields)

    def to_payload(self) -> bytes:
        return _json.encode(dict(self.fields))


def parse_command(payload: Payload) -> FirmwareCommand | None:
    """Parse a command payload; ``None`` for an empty payload (a clear, never a command).

    The payload must be a JSON object; key order, whitespace and unknown
    fields are all kept.
    """
    if len(payload) == 0:
        return None
    return FirmwareCommand(_json.decode_object(payload, _error, "firmware_update command"))


def build_command(
    *,
    name: str,
    version: str,
    remote_url: str,
    tedge_url: str,
    sha256: str | None = None,
    size: int | None = None,
    extra: Mapping[str, JSONValue] | None = None,
) -> FirmwareCommand:
    """The requester's ``init`` command (seed 000 step 5 order), plus otahub's extras.

    ``tedgeUrl`` and ``remoteUrl`` are always sent as strings: executors read
    both unconditionally.
    """
    fields: JSONObject = {
        "status": CommandStatus.INIT.value,
        "tedgeUrl": tedge_url,
        "remoteUrl": remote_url,
        "name": name,
        "version": version,
    }
    if sha256 is not None:
        fields["sha256"] = sha256.lower()
    if size is not None:
        fields["size"] = size
    for key, value in (extra or {}).items():
        if key in fields:
            raise ThinEdgeError(f"extra field {key!r} would overwrite a command field")
        fields[key] = value
    return FirmwareCommand(fields)


# --------------------------------------------------------------------------
# Executor and requester rules


class ExecutorAction(Enum):
    """What an executor does with a (possibly replayed, retained) command."""

    #: A fresh ``init`` while nothing else runs: start the update.
    START = "start"
    #: A non-terminal command it already works on, or one left ``executing``/custom
    #: by an earlier run (e.g. before a reboot): continue or verify, never restart.
    RESUME = "resume"
    #: It already finished this command but the topic does not show it yet:
    #: publish its terminal status again.
    REPORT = "report"
    #: A clear: the requester withdrew the command. The executor stops working
    #: on it unless its install already started, and publishes nothing more on
    #: the topic (a status would put a retained command back).
    WITHDRAW = "withdraw"
    #: A terminal status, or an ``init`` while busy (not queued).
    IGNORE = "ignore"


def executor_action(
    command: FirmwareCommand | None, *, local_status: str | None = None, busy: bool = False
) -> ExecutorAction:
    """Decide by ``(topic, status)`` what to do with a received command.

    ``local_status`` is the status this executor last published for the
    command's topic (``None`` if it has no record); ``busy`` says whether it
    runs another command.
    """
    if command is None:
        return ExecutorAction.WITHDRAW
    if command.is_terminal:
        return ExecutorAction.IGNORE
    if local_status is not None:
        if local_status in TERMINAL_STATUSES:
            return ExecutorAction.REPORT
        return ExecutorAction.RESUME
    if command.known_status is CommandStatus.INIT:
        return ExecutorAction.IGNORE if busy else ExecutorAction.START
    return ExecutorAction.RESUME


def requester_should_clear(command: FirmwareCommand | None) -> bool:
    """After a terminal status the requester clears the topic with an empty retained message."""
    return command is not None and command.is_terminal


_CUSTOM_STATES: Final[Mapping[str, UpdateState]] = {
    "downloading": UpdateState.DOWNLOADING,
    "download": UpdateState.DOWNLOADING,
    "downloaded": UpdateState.DOWNLOADED,
    "verified": UpdateState.VERIFIED,
    "installing": UpdateState.INSTALLING,
    "install": UpdateState.INSTALLING,
    "restart": UpdateState.INSTALLING,
    "waiting_for_restart": UpdateState.INSTALLING,
    "verify": UpdateState.INSTALLING,
    "verifying": UpdateState.INSTALLING,
    "commit": UpdateState.INSTALLING,
}

STATUS_TO_STATE: Final[Mapping[CommandStatus, UpdateState]] = {
    CommandStatus.INIT: UpdateState.SENT,
    CommandStatus.SCHEDULED: UpdateState.SENT,
    CommandStatus.EXECUTING: UpdateState.DOWNLOADING,
    CommandStatus.SUCCESSFUL: UpdateState.SUCCEEDED,
    CommandStatus.FAILED: UpdateState.FAILED,
}


def status_to_state(status: str) -> UpdateState:
    """Canonical state for a command status (see the module table)."""
    try:
        return STATUS_TO_STATE[CommandStatus(status)]
    except ValueError:
        return _CUSTOM_STATES.get(status, UpdateState.DOWNLOADING)
