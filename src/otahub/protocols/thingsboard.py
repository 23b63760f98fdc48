"""ThingsBoard / ServicePleX device API for OTA (the ``thingsboard`` dialect).

Pure protocol layer shared by the hub driver and the agent: topic names and
their parsing, the exact-string subscription rules, attribute requests and
responses, shared firmware attributes, telemetry, the ``v2/fw`` chunk protocol
and the HTTP firmware endpoint as pure decisions, basic MQTT credentials, and
the mapping of ``fw_state`` onto the canonical update states.

Mapping to canonical states (:func:`fw_state_to_state`):

==============  ===============  ===================================================
``fw_state``    canonical        notes
==============  ===============  ===================================================
``QUEUED``      ``pending``      written by the server on assignment
``INITIATED``   ``sent``         once the attributes are pushed or answered
``DOWNLOADING`` ``downloading``  the first chunk request counts as well
``DOWNLOADED``  ``downloaded``
``VERIFIED``    ``verified``
``UPDATING``    ``installing``
``UPDATED``     ``succeeded``    cross-checked with ``current_fw_version``
                                 (:func:`check_updated`)
``FAILED``      ``failed``       the reason is ``fw_error``
anything else   none             stored verbatim (``tb-mqtt-client`` sends ``IDLE``)
==============  ===============  ===================================================

The software flow is the same with ``sw_`` keys, ``sw_state`` and
``v2/sw/...`` topics, except that chunk errors always go to ``v2/fw/error``.

Where the upstream server is looser than its documented contract, this
module follows the contract: a chunk topic must match
``v2/{fw|sw}/request/{digits}/chunk/{digits}`` in full, payloads must be strict
JSON, and a chunk index too large for a 32-bit integer is simply past the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Final

from otahub.protocols import _json
from otahub.protocols._json import JSONObject, JSONValue, Payload
from otahub.protocols.states import UpdateState


class ThingsBoardError(ValueError):
    """A message that breaks the ThingsBoard device API.

    When it comes from a device PUBLISH it is a *payload error*: MQTT 5 answers
    with PUBACK :data:`PUBACK_PAYLOAD_FORMAT_INVALID`, MQTT 3.1.1 closes the
    session.
    """


def _error(message: str) -> ThingsBoardError:
    return ThingsBoardError(message)


# --------------------------------------------------------------------------
# Reason codes the dialect uses

#: PUBACK for a publish to a topic the API does not know (MQTT 5).
PUBACK_TOPIC_NAME_INVALID: Final = 0x90
#: PUBACK for a malformed payload (MQTT 5); MQTT 3.1.1 closes instead.
PUBACK_PAYLOAD_FORMAT_INVALID: Final = 0x99
#: SUBACK return code for a refused filter under MQTT 3.1.1.
SUBACK_FAILURE: Final = 0x80
#: SUBACK reason code for a refused filter under MQTT 5.
SUBACK_TOPIC_FILTER_INVALID: Final = 0x8F
#: DISCONNECT sent (MQTT 5) before closing on a chunk size that is not a number.
DISCONNECT_CHUNK_PARSE_ERROR: Final = 0x8B
#: DISCONNECT sent (MQTT 5) after an error on ``v2/fw/error``.
DISCONNECT_IMPLEMENTATION_SPECIFIC: Final = 0x83

# --------------------------------------------------------------------------
# Topics

TELEMETRY_TOPIC: Final = "v1/devices/me/telemetry"
ATTRIBUTES_TOPIC: Final = "v1/devices/me/attributes"
# every topic a device may publish on starts with one of these
DEVICE_TOPIC_PREFIXES: Final = ("v1/devices/me/", "v1/gateway/", "v2/")
ATTRIBUTES_REQUEST_PREFIX: Final = "v1/devices/me/attributes/request/"
ATTRIBUTES_RESPONSE_PREFIX: Final = "v1/devices/me/attributes/response/"
ATTRIBUTES_RESPONSE_FILTER: Final = "v1/devices/me/attributes/response/+"
RPC_REQUEST_PREFIX: Final = "v1/devices/me/rpc/request/"
RPC_RESPONSE_PREFIX: Final = "v1/devices/me/rpc/response/"
RPC_REQUEST_FILTER: Final = "v1/devices/me/rpc/request/+"
RPC_RESPONSE_FILTER: Final = "v1/devices/me/rpc/response/+"
CLAIM_TOPIC: Final = "v1/devices/me/claim"

FW_CHUNK_FILTER: Final = "v2/fw/response/+/chunk/+"
SW_CHUNK_FILTER: Final = "v2/sw/response/+/chunk/+"
FW_ERROR_TOPIC: Final = "v2/fw/error"
SW_ERROR_TOPIC: Final = "v2/sw/error"
#: Where every chunk error goes, software included (upstream hard-codes it).
OTA_ERROR_TOPIC: Final = FW_ERROR_TOPIC

#: Chunk error texts published on :data:`OTA_ERROR_TOPIC`.
ERROR_NOT_FOUND: Final = "NOT_FOUND"
ERROR_FAILURE: Final = "FAILURE"
ERROR_PAYLOAD_TOO_LARGE: Final = "PAYLOAD_TOO_LARGE"

#: Upstream ``transport.mqtt.netty.max_payload_size``: the largest chunk size.
DEFAULT_MAX_CHUNK_SIZE: Final = 65536

#: Username or client id that opens a provisioning-only session.
PROVISION: Final = "provision"


class PackageType(Enum):
    """Firmware or software: the two OTA package kinds, with their key prefix."""

    FIRMWARE = "fw"
    SOFTWARE = "sw"

    @property
    def prefix(self) -> str:
        return self.value


#: Both kinds, as a tuple: iterating the enum itself costs more, per telemetry message.
PACKAGES: Final = tuple(PackageType)


class TopicFamily(Enum):
    """Which topic family a request came in on; the reply uses the same one."""

    V1 = "v1"
    V2 = "v2"
    V2_JSON = "v2/j"
    V2_PROTO = "v2/p"


_ATTRIBUTE_RESPONSE_PREFIXES: Final[Mapping[TopicFamily, str]] = {
    TopicFamily.V1: ATTRIBUTES_RESPONSE_PREFIX,
    TopicFamily.V2: "v2/a/res/",
    TopicFamily.V2_JSON: "v2/a/res/j/",
    TopicFamily.V2_PROTO: "v2/a/res/p/",
}
_RPC_RESPONSE_PREFIXES: Final[Mapping[TopicFamily, str]] = {
    TopicFamily.V1: RPC_RESPONSE_PREFIX,
    TopicFamily.V2: "v2/r/res/",
    TopicFamily.V2_JSON: "v2/r/res/j/",
    TopicFamily.V2_PROTO: "v2/r/res/p/",
}


def attributes_response_topic(request_id: int, family: TopicFamily = TopicFamily.V1) -> str:
    """``v1/devices/me/attributes/response/{id}`` (or its v2 form)."""
    return f"{_ATTRIBUTE_RESPONSE_PREFIXES[family]}{request_id}"


def attributes_request_topic(request_id: int) -> str:
    """``v1/devices/me/attributes/request/{id}``, for the agent."""
    return f"{ATTRIBUTES_REQUEST_PREFIX}{request_id}"


def rpc_response_topic(request_id: int, family: TopicFamily = TopicFamily.V1) -> str:
    """``v1/devices/me/rpc/response/{id}`` (or its v2 form)."""
    return f"{_RPC_RESPONSE_PREFIXES[family]}{request_id}"


def chunk_request_topic(package: PackageType, request_id: int | str, chunk: int) -> str:
    """``v2/fw/request/{rid}/chunk/{n}``, for the agent."""
    rid = str(request_id)
    if not _is_ascii_digits(rid) or chunk < 0:
        raise ThingsBoardError(
            f"request id and chunk index must be non-negative integers, got {rid!r}, {chunk}"
        )
    return f"v2/{package.prefix}/request/{rid}/chunk/{chunk}"


def chunk_response_topic(package: PackageType, request_id: str, chunk: int) -> str:
    """``v2/fw/response/{rid}/chunk/{n}``.

    ``request_id`` is echoed verbatim (upstream keeps it as a string); the
    chunk index is printed as a number, so ``007`` comes back as ``7``.
    """
    return f"v2/{package.prefix}/response/{request_id}/chunk/{chunk}"


def chunk_response_filter(package: PackageType) -> str:
    """The filter the server accepts for chunk responses."""
    return FW_CHUNK_FILTER if package is PackageType.FIRMWARE else SW_CHUNK_FILTER


# --------------------------------------------------------------------------
# Numbers as upstream parses them


def _is_ascii_digits(text: str) -> bool:
    # str.isdigit() accepts non-ASCII digits; the upstream regex \d does not.
    return bool(text) and text.isascii() and text.isdigit()


def _parse_decimal(text: str) -> int | None:
    """An optionally signed ASCII decimal integer (``Integer.parseInt`` syntax)."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not _is_ascii_digits(digits):
        return None
    value = int(digits)
    return -value if text.startswith("-") else value


_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1


def _parse_int32(text: str) -> int | None:
    value = _parse_decimal(text)
    if value is None or not _INT32_MIN <= value <= _INT32_MAX:
        return None
    return value


# --------------------------------------------------------------------------
# Subscriptions (section 3)


class SubscriptionKind(Enum):
    """What an accepted SUBSCRIBE filter stands for."""

    ATTRIBUTE_UPDATES = "attribute updates"
    ATTRIBUTE_RESPONSES = "attribute responses"
    RPC_REQUESTS = "rpc requests"
    RPC_RESPONSES = "rpc responses"
    FIRMWARE_CHUNKS = "firmware chunks"
    FIRMWARE_ERRORS = "firmware errors"
    SOFTWARE_CHUNKS = "software chunks"
    SOFTWARE_ERRORS = "software errors"
    GATEWAY = "gateway"


@dataclass(frozen=True)
class Subscription:
    """An accepted filter. ``family`` is set where it picks the reply topics."""

    topic_filter: str
    kind: SubscriptionKind
    family: TopicFamily | None = None

    @property
    def starts_attribute_pushes(self) -> bool:
        """Shared-attribute pushes start only after such a subscription."""
        return self.kind is SubscriptionKind.ATTRIBUTE_UPDATES


_SUBSCRIPTIONS: Final[Mapping[str, tuple[SubscriptionKind, TopicFamily | None]]] = {
    ATTRIBUTES_TOPIC: (SubscriptionKind.ATTRIBUTE_UPDATES, TopicFamily.V1),
    "v2/a": (SubscriptionKind.ATTRIBUTE_UPDATES, TopicFamily.V2),
    "v2/a/j": (SubscriptionKind.ATTRIBUTE_UPDATES, TopicFamily.V2_JSON),
    "v2/a/p": (SubscriptionKind.ATTRIBUTE_UPDATES, TopicFamily.V2_PROTO),
    RPC_REQUEST_FILTER: (SubscriptionKind.RPC_REQUESTS, TopicFamily.V1),
    "v2/r/req/+": (SubscriptionKind.RPC_REQUESTS, TopicFamily.V2),
    "v2/r/req/j/+": (SubscriptionKind.RPC_REQUESTS, TopicFamily.V2_JSON),
    "v2/r/req/p/+": (SubscriptionKind.RPC_REQUESTS, TopicFamily.V2_PROTO),
    RPC_RESPONSE_FILTER: (SubscriptionKind.RPC_RESPONSES, None),
    "v2/r/res/+": (SubscriptionKind.RPC_RESPONSES, None),
    "v2/r/res/j/+": (SubscriptionKind.RPC_RESPONSES, None),
    "v2/r/res/p/+": (SubscriptionKind.RPC_RESPONSES, None),
    ATTRIBUTES_RESPONSE_FILTER: (SubscriptionKind.ATTRIBUTE_RESPONSES, None),
    "v2/a/res/+": (SubscriptionKind.ATTRIBUTE_RESPONSES, None),
    "v2/a/res/j/+": (SubscriptionKind.ATTRIBUTE_RESPONSES, None),
    "v2/a/res/p/+": (SubscriptionKind.ATTRIBUTE_RESPONSES, None),
    "v1/gateway/attributes": (SubscriptionKind.GATEWAY, None),
    "v1/gateway/rpc": (SubscriptionKind.GATEWAY, None),
    "v1/gateway/attributes/response": (SubscriptionKind.GATEWAY, None),
    FW_CHUNK_FILTER: (SubscriptionKind.FIRMWARE_CHUNKS, None),
    FW_ERROR_TOPIC: (SubscriptionKind.FIRMWARE_ERRORS, None),
    SW_CHUNK_FILTER: (SubscriptionKind.SOFTWARE_CHUNKS, None),
    SW_ERROR_TOPIC: (SubscriptionKind.SOFTWARE_ERRORS, None),
}

#: Every filter the server accepts, compared as exact strings.
ACCEPTED_FILTERS: Final = frozenset(_SUBSCRIPTIONS)


def accept_subscription(topic_filter: str) -> Subscription | None:
    """Apply the exact-string subscription rule.

    Returns ``None`` for a refused filter: the SUBACK carries
    :data:`SUBACK_FAILURE` (MQTT 5: :data:`SUBACK_TOPIC_FILTER_INVALID`) and the
    session stays up. Wildcards are not interpreted, so
    ``v1/devices/me/attributes/`` and ``v2/fw/response/+`` are refused.
    Responses and chunks are delivered to the requesting session whether or
    not a subscription exists; a subscription only sets their QoS.
    """
    entry = _SUBSCRIPTIONS.get(topic_filter)
    if entry is None:
        return None
    return Subscription(topic_filter, entry[0], entry[1])


def suback_refusal_code(mqtt5: bool) -> int:
    """The SUBACK code for a refused filter."""
    return SUBACK_TOPIC_FILTER_INVALID if mqtt5 else SUBACK_FAILURE


# --------------------------------------------------------------------------
# Device publishes


class PublishKind(Enum):
    """What a device PUBLISH is, by topic."""

    TELEMETRY = "telemetry"
    ATTRIBUTES = "attributes"
    ATTRIBUTE_REQUEST = "attribute request"
    RPC_REQUEST = "rpc request"
    RPC_RESPONSE = "rpc response"
    CLAIM = "claim"
    CHUNK_REQUEST = "chunk request"


@dataclass(frozen=True)
class DevicePublish:
    """A classified device topic.

    ``request_id`` is set for attribute requests and RPCs; ``chunk`` for chunk
    requests. ``family`` says which topic family the reply must use.
    """

    kind: PublishKind
    family: TopicFamily = TopicFamily.V1
    request_id: int | None = None
    chunk: ChunkTopic | None = None


@dataclass(frozen=True)
class ChunkTopic:
    """The parts of ``v2/fw/request/{rid}/chunk/{n}``."""

    package: PackageType
    request_id: str
    chunk: int

    @property
    def response_topic(self) -> str:
        return chunk_response_topic(self.package, self.request_id, self.chunk)


_CHUNK_TOPIC_RE: Final = re.compile(r"v2/(fw|sw)/request/([0-9]+)/chunk/([0-9]+)")


def parse_chunk_topic(topic: str) -> ChunkTopic | None:
    """Match ``v2/{fw|sw}/request/{rid}/chunk/{n}``; ``None`` if it does not match.

    ``{rid}`` and ``{n}`` must be all ASCII digits; anything else is an
    unknown topic (PUBACK :data:`PUBACK_TOPIC_NAME_INVALID`, no reply).
    """
    match = _CHUNK_TOPIC_RE.fullmatch(topic)
    if match is None:
        return None
    return ChunkTopic(PackageType(match[1]), match[2], int(match[3]))


_CHUNK_RESPONSE_RE: Final = re.compile(r"v2/(fw|sw)/response/([0-9]+)/chunk/([0-9]+)")


def parse_chunk_response_topic(topic: str) -> ChunkTopic | None:
    """Match ``v2/{fw|sw}/response/{rid}/chunk/{n}`` (the agent's side); else ``None``."""
    match = _CHUNK_RESPONSE_RE.fullmatch(topic)
    if match is None:
        return None
    return ChunkTopic(PackageType(match[1]), match[2], int(match[3]))


# Prefix checks in upstream order: the ``j/``/``p/`` prefixes before the bare one.
_REQUEST_ID_PREFIXES: Final[tuple[tuple[str, PublishKind, TopicFamily], ...]] = (
    (ATTRIBUTES_REQUEST_PREFIX, PublishKind.ATTRIBUTE_REQUEST, TopicFamily.V1),
    (RPC_RESPONSE_PREFIX, PublishKind.RPC_RESPONSE, TopicFamily.V1),
    (RPC_REQUEST_PREFIX, PublishKind.RPC_REQUEST, TopicFamily.V1),
    ("v2/r/res/j/", PublishKind.RPC_RESPONSE, TopicFamily.V2_JSON),
    ("v2/r/res/p/", PublishKind.RPC_RESPONSE, TopicFamily.V2_PROTO),
    ("v2/r/res/", PublishKind.RPC_RESPONSE, TopicFamily.V2),
    ("v2/r/req/j/", PublishKind.RPC_REQUEST, TopicFamily.V2_JSON),
    ("v2/r/req/p/", PublishKind.RPC_REQUEST, TopicFamily.V2_PROTO),
    ("v2/r/req/", PublishKind.RPC_REQUEST, TopicFamily.V2),
    ("v2/a/req/j/", PublishKind.ATTRIBUTE_REQUEST, TopicFamily.V2_JSON),
    ("v2/a/req/p/", PublishKind.ATTRIBUTE_REQUEST, TopicFamily.V2_PROTO),
    ("v2/a/req/", PublishKind.ATTRIBUTE_REQUEST, TopicFamily.V2),
)

_EXACT_TOPICS: Final[Mapping[str, tuple[PublishKind, TopicFamily]]] = {
    TELEMETRY_TOPIC: (PublishKind.TELEMETRY, TopicFamily.V1),
    ATTRIBUTES_TOPIC: (PublishKind.ATTRIBUTES, TopicFamily.V1),
    CLAIM_TOPIC: (PublishKind.CLAIM, TopicFamily.V1),
    "v2/t": (PublishKind.TELEMETRY, TopicFamily.V2),
    "v2/t/j": (PublishKind.TELEMETRY, TopicFamily.V2_JSON),
    "v2/t/p": (PublishKind.TELEMETRY, TopicFamily.V2_PROTO),
    "v2/a": (PublishKind.ATTRIBUTES, TopicFamily.V2),
    "v2/a/j": (PublishKind.ATTRIBUTES, TopicFamily.V2_JSON),
    "v2/a/p": (PublishKind.ATTRIBUTES, TopicFamily.V2_PROTO),
}


def classify_publish(topic: str) -> DevicePublish | None:
    """Classify a device PUBLISH topic; ``None`` means unknown topic.

    An unknown topic is PUBACKed (MQTT 5: :data:`PUBACK_TOPIC_NAME_INVALID`)
    and dropped. Raises :class:`ThingsBoardError` (a payload error) for an
    attribute-request or RPC topic whose ``{id}`` is not an integer.
    """
    exact = _EXACT_TOPICS.get(topic)
    if exact is not None:
        return DevicePublish(exact[0], exact[1])
    chunk = parse_chunk_topic(topic)
    if chunk is not None:
        return DevicePublish(PublishKind.CHUNK_REQUEST, TopicFamily.V2, chunk=chunk)
    for prefix, kind, family in _REQUEST_ID_PREFIXES:
        if topic.startswith(prefix):
            raw_id = topic[len(prefix) :]
            request_id = _parse_int32(raw_id)
            if request_id is None:
                raise ThingsBoardError(f"request id {raw_id!r} in {topic!r} is not an integer")
            return DevicePublish(kind, family, request_id=request_id)
    return None


def _require_json_family(family: TopicFamily, what: str) -> None:
    if family is TopicFamily.V2_PROTO:
        raise ThingsBoardError(f"{what} on a protobuf topic is not supported; use JSON")


# --------------------------------------------------------------------------
# Attributes (section 4)


def _java_split_commas(text: str) -> list[str]:
    # String.split(",") in Java: no match returns the whole string (even ""),
    # otherwise trailing empty strings are dropped. No trimming.
    if "," not in text:
        return [text]
    parts = text.split(",")
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def _key_list_text(value: JSONValue, name: str) -> str:
    # Mirrors Gson's JsonElement.getAsString(): a one-element array stands for
    # its element; longer or empty arrays, objects and null are errors.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _json.encode(value).decode()
    if isinstance(value, list):
        if len(value) != 1:
            raise ThingsBoardError(
                f"{name} must be a comma-separated string, got an array of {len(value)} elements"
            )
        return _key_list_text(value[0], name)
    raise ThingsBoardError(f"{name} must be a comma-separated string, got {_json.type_name(value)}")


@dataclass(frozen=True)
class AttributeRequest:
    """A parsed ``attributes/request/{id}``.

    ``client_keys``/``shared_keys`` are ``None`` when that list was not sent.
    When neither was sent, every client and shared attribute is wanted.
    """

    request_id: int
    client_keys: frozenset[str] | None
    shared_keys: frozenset[str] | None
    family: TopicFamily = TopicFamily.V1

    @property
    def wants_everything(self) -> bool:
        return self.client_keys is None and self.shared_keys is None

    @property
    def response_topic(self) -> str:
        return attributes_response_topic(self.request_id, self.family)

    def select(
        self, client: Mapping[str, JSONValue], shared: Mapping[str, JSONValue]
    ) -> tuple[dict[str, JSONValue], dict[str, JSONValue]]:
        """Pick the requested attributes; missing keys are simply absent."""
        if self.wants_everything:
            return dict(client), dict(shared)
        return _pick(client, self.client_keys), _pick(shared, self.shared_keys)


def _pick(values: Mapping[str, JSONValue], keys: frozenset[str] | None) -> dict[str, JSONValue]:
    if keys is None:
        return {}
    return {key: value for key, value in values.items() if key in keys}


def parse_attribute_request(
    request_id: int, payload: Payload, family: TopicFamily = TopicFamily.V1
) -> AttributeRequest:
    """Parse an attribute request body, e.g. ``{"sharedKeys":"fw_title,fw_version"}``.

    Each list is split on ``,`` with no trimming. A list sent as an array of
    more than one element, a body that is not a JSON object, or non-JSON
    raises :class:`ThingsBoardError` (a payload error).
    """
    _require_json_family(family, "an attribute request")
    body = _json.decode_object(payload, _error, "attribute request")
    keys: dict[str, frozenset[str] | None] = {}
    for name in ("clientKeys", "sharedKeys"):
        if name in body:
            keys[name] = frozenset(_java_split_commas(_key_list_text(body[name], name)))
        else:
            keys[name] = None
    return AttributeRequest(request_id, keys["clientKeys"], keys["sharedKeys"], family)


def build_attribute_request(
    *, client_keys: Iterable[str] | None = None, shared_keys: Iterable[str] | None = None
) -> bytes:
    """The agent's request body: comma-joined lists with no spaces."""
    body: JSONObject = {}
    for name, keys in (("clientKeys", client_keys), ("sharedKeys", shared_keys)):
        if keys is None:
            continue
        key_list = list(keys)
        if not key_list or any(not key or "," in key for key in key_list):
            raise ThingsBoardError(f"{name} must be non-empty keys without commas: {key_list!r}")
        body[name] = ",".join(key_list)
    return _json.encode(body)


def build_attributes_response(
    client: Mapping[str, JSONValue] | None = None, shared: Mapping[str, JSONValue] | None = None
) -> bytes:
    """``{"client":{…},"shared":{…}}`` with each empty section omitted (``{}`` is valid)."""
    body: JSONObject = {}
    if client:
        body["client"] = dict(client)
    if shared:
        body["shared"] = dict(shared)
    return _json.encode(body)


@dataclass(frozen=True)
class AttributesResponse:
    """An attribute response as the agent reads it."""

    client: Mapping[str, JSONValue]
    shared: Mapping[str, JSONValue]


def parse_attributes_response(payload: Payload) -> AttributesResponse:
    """Parse ``{"client":{…},"shared":{…}}``; absent sections are empty."""
    body = _json.decode_object(payload, _error, "attribute response")
    sections: dict[str, dict[str, JSONValue]] = {}
    for name in ("client", "shared"):
        section = body.get(name, {})
        if not isinstance(section, dict):
            raise ThingsBoardError(
                f"attribute response {name!r} must be an object, got {_json.type_name(section)}"
            )
        sections[name] = section
    return AttributesResponse(sections["client"], sections["shared"])


@dataclass(frozen=True)
class AttributePush:
    """A shared-attribute push: either updated values or deleted keys."""

    updated: Mapping[str, JSONValue] = field(default_factory=dict)
    deleted: tuple[str, ...] = ()


def parse_attribute_push(payload: Payload) -> AttributePush:
    """Parse a push on ``v1/devices/me/attributes``.

    ``{"deleted":[…]}`` (exactly that key, a list of strings) is a deletion;
    any other object is a flat update of the keys just saved.
    """
    body = _json.decode_object(payload, _error, "attribute push")
    deleted = body.get("deleted")
    if len(body) == 1 and isinstance(deleted, list):
        if not all(isinstance(key, str) for key in deleted):
            raise ThingsBoardError("attribute deletion must list key names as strings")
        return AttributePush(deleted=tuple(key for key in deleted if isinstance(key, str)))
    return AttributePush(updated=body)


def build_attribute_update(saved: Mapping[str, JSONValue]) -> bytes:
    """A flat update push: ``{"fw_title":…,"fw_version":…}``."""
    return _json.encode(dict(saved))


def build_attribute_deletion(keys: Iterable[str]) -> bytes:
    """A deletion push: ``{"deleted":["fw_tag","fw_url"]}``."""
    return _json.encode({"deleted": list(keys)})


def parse_client_attributes(payload: Payload) -> dict[str, JSONValue]:
    """Client attributes posted on ``v1/devices/me/attributes``: a JSON object."""
    return _json.decode_object(payload, _error, "client attributes")


# --------------------------------------------------------------------------
# Firmware attributes (section 6)


class OtaKey(StrEnum):
    """Suffixes of the OTA shared attributes (``fw_`` or ``sw_`` in front)."""

    TITLE = "title"
    VERSION = "version"
    TS = "ts"
    TAG = "tag"
    URL = "url"
    SIZE = "size"
    CHECKSUM = "checksum"
    CHECKSUM_ALGORITHM = "checksum_algorithm"
    STATE = "state"


def attribute_key(package: PackageType, key: OtaKey) -> str:
    """``fw_title``, ``sw_checksum_algorithm`` …"""
    return f"{package.prefix}_{key.value}"


#: Checksum algorithm names as ThingsBoard writes them in ``fw_checksum_algorithm``.
CHECKSUM_ALGORITHMS: Final = frozenset(
    {"MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128"}
)

#: The keys a device typically requests (seed 003 order).
REQUESTED_KEYS: Final = (
    OtaKey.TITLE,
    OtaKey.VERSION,
    OtaKey.SIZE,
    OtaKey.CHECKSUM,
    OtaKey.CHECKSUM_ALGORITHM,
)


@dataclass(frozen=True)
class PackageAttributes:
    """What the shared OTA attributes describe.

    ``url`` is set only for a package with an external URL; a package with
    uploaded data must have ``size``, ``checksum`` and ``checksum_algorithm``.
    """

    title: str
    version: str
    size: int | None = None
    checksum: str | None = None
    checksum_algorithm: str | None = None
    tag: str | None = None
    url: str | None = None

    @property
    def is_external(self) -> bool:
        return self.url is not None

    @property
    def assignment(self) -> tuple[str, str] | None:
        """``(title, version)`` of the assigned package; ``None`` when either is empty.

        This pair is what an assignment is: attributes that leave it unchanged
        (a deletion of other keys, a new tag or size) assign nothing new.
        """
        if not self.title or not self.version:
            return None
        return (self.title, self.version)


@dataclass(frozen=True)
class AttributeChange:
    """Shared attributes to save and keys to delete.

    The server deletes first and saves second, so :meth:`messages` yields the
    deletion push (if any) before the update push.
    """

    saved: Mapping[str, JSONValue]
    deleted: tuple[str, ...]

    def messages(self) -> tuple[bytes, ...]:
        out: list[bytes] = []
        if self.deleted:
            out.append(build_attribute_deletion(self.deleted))
        if self.saved:
            out.append(build_attribute_update(self.saved))
        return tuple(out)


def canonical_checksum(checksum: str) -> str:
    """Lowercase hex without a ``0x`` prefix: devices compare checksums as exact strings."""
    text = checksum.strip()
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    return text.lower()


def assignment_attributes(package: PackageType, attrs: PackageAttributes) -> AttributeChange:
    """The shared attributes written on assignment (section 6 table).

    The checksum is sent in its canonical form (:func:`canonical_checksum`).
    """
    if not attrs.title or not attrs.version:
        raise ThingsBoardError("a package needs a non-empty title and version")
    if attrs.size is not None and attrs.size < 0:
        raise ThingsBoardError(f"package size must not be negative, got {attrs.size}")
    if attrs.checksum_algorithm is not None and attrs.checksum_algorithm not in CHECKSUM_ALGORITHMS:
        raise ThingsBoardError(f"unknown checksum algorithm {attrs.checksum_algorithm!r}")
    if not attrs.is_external and (
        attrs.size is None or attrs.checksum is None or attrs.checksum_algorithm is None
    ):
        raise ThingsBoardError("a package with uploaded data needs size, checksum and algorithm")

    saved: dict[str, JSONValue] = {}
    deleted: list[str] = []

    def put(key: OtaKey, value: JSONValue) -> None:
        if value is None:
            deleted.append(attribute_key(package, key))
        else:
            saved[attribute_key(package, key)] = value

    put(OtaKey.TITLE, attrs.title)
    put(OtaKey.VERSION, attrs.version)
    put(OtaKey.TAG, attrs.tag)
    put(OtaKey.SIZE, attrs.size)
    put(OtaKey.CHECKSUM_ALGORITHM, attrs.checksum_algorithm)
    put(OtaKey.CHECKSUM, None if attrs.checksum is None else canonical_checksum(attrs.checksum))
    put(OtaKey.URL, attrs.url)
    return AttributeChange(saved, tuple(deleted))


#: Keys deleted on unassignment, in upstream order.
UNASSIGN_KEYS: Final = (
    OtaKey.TITLE,
    OtaKey.VERSION,
    OtaKey.TS,
    OtaKey.TAG,
    OtaKey.URL,
    OtaKey.SIZE,
    OtaKey.CHECKSUM,
    OtaKey.CHECKSUM_ALGORITHM,
    OtaKey.STATE,
)


def unassignment_attributes(package: PackageType) -> AttributeChange:
    """Unassigning deletes all nine ``fw_*`` (or ``sw_*``) attributes."""
    return AttributeChange({}, tuple(attribute_key(package, key) for key in UNASSIGN_KEYS))


def package_from_attributes(
    package: PackageType, attributes: Mapping[str, JSONValue]
) -> PackageAttributes | None:
    """Read the OTA attributes the agent received; ``None`` without title and version.

    Raises :class:`ThingsBoardError` when a present key has the wrong type
    (``fw_size`` must be a non-negative integer, the others strings).
    """
    title = attributes.get(attribute_key(package, OtaKey.TITLE))
    version = attributes.get(attribute_key(package, OtaKey.VERSION))
    if title is None or version is None:
        return None

    def text(key: OtaKey) -> str | None:
        name = attribute_key(package, key)
        value = attributes.get(name)
        if value is None or isinstance(value, str):
            return value
        raise ThingsBoardError(f"{name} must be a string, got {_json.type_name(value)}")

    size_name = attribute_key(package, OtaKey.SIZE)
    raw_size = attributes.get(size_name)
    size: int | None = None
    if raw_size is not None:
        if not _json.is_int(raw_size) or raw_size < 0:
            raise ThingsBoardError(f"{size_name} must be a non-negative integer, got {raw_size!r}")
        size = raw_size
    return PackageAttributes(
        title=text(OtaKey.TITLE) or "",
        version=text(OtaKey.VERSION) or "",
        size=size,
        checksum=text(OtaKey.CHECKSUM),
        checksum_algorithm=text(OtaKey.CHECKSUM_ALGORITHM),
        tag=text(OtaKey.TAG),
        url=text(OtaKey.URL),
    )


# --------------------------------------------------------------------------
# Telemetry (section 5) and fw_state


class FwState(StrEnum):
    """``fw_state`` / ``sw_state`` values (upstream ``OtaPackageUpdateStatus``)."""

    QUEUED = "QUEUED"
    INITIATED = "INITIATED"
    DOWNLOADING = "DOWNLOADING"
    DOWNLOADED = "DOWNLOADED"
    VERIFIED = "VERIFIED"
    UPDATING = "UPDATING"
    UPDATED = "UPDATED"
    FAILED = "FAILED"


FW_STATE_TO_STATE: Final[Mapping[FwState, UpdateState]] = {
    FwState.QUEUED: UpdateState.PENDING,
    FwState.INITIATED: UpdateState.SENT,
    FwState.DOWNLOADING: UpdateState.DOWNLOADING,
    FwState.DOWNLOADED: UpdateState.DOWNLOADED,
    FwState.VERIFIED: UpdateState.VERIFIED,
    FwState.UPDATING: UpdateState.INSTALLING,
    FwState.UPDATED: UpdateState.SUCCEEDED,
    FwState.FAILED: UpdateState.FAILED,
}

STATE_TO_FW_STATE: Final[Mapping[UpdateState, FwState]] = {
    state: fw for fw, state in FW_STATE_TO_STATE.items()
}


def parse_fw_state(value: str) -> FwState | None:
    """The known ``fw_state`` for ``value`` (exact, case-sensitive), else ``None``."""
    try:
        return FwState(value)
    except ValueError:
        return None


def fw_state_to_state(value: str) -> UpdateState | None:
    """Canonical state for an ``fw_state`` string; ``None`` for unknown values."""
    known = parse_fw_state(value)
    return None if known is None else FW_STATE_TO_STATE[known]


@dataclass(frozen=True)
class TelemetryEntry:
    """One group of values; ``ts`` (ms) is ``None`` when the server stamps it."""

    values: Mapping[str, JSONValue]
    ts: int | None = None


def _parse_ts(value: JSONValue) -> int:
    # Upstream reads ts with getAsLong(): numbers (fractions truncated) and
    # decimal strings; anything else is a syntax error.
    if _json.is_int(value):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        parsed = _parse_decimal(value)
        if parsed is not None:
            return parsed
    raise ThingsBoardError(f"telemetry ts must be a number of milliseconds, got {value!r}")


def _telemetry_values(obj: JSONObject) -> dict[str, JSONValue]:
    for key, value in obj.items():
        if value is None:
            raise ThingsBoardError(f"telemetry value of {key!r} is null")
    return obj


def _telemetry_object(obj: JSONObject) -> TelemetryEntry:
    if "ts" in obj and "values" in obj:
        values = obj["values"]
        if not isinstance(values, dict):
            raise ThingsBoardError(
                f"telemetry values must be an object, got {_json.type_name(values)}"
            )
        return TelemetryEntry(_telemetry_values(values), _parse_ts(obj["ts"]))
    return TelemetryEntry(_telemetry_values(obj))


def parse_telemetry(
    payload: Payload, family: TopicFamily = TopicFamily.V1
) -> tuple[TelemetryEntry, ...]:
    """Parse telemetry: an object, ``{"ts":…,"values":{…}}``, or an array of either."""
    _require_json_family(family, "telemetry")
    body = _json.decode(payload, _error, "telemetry")
    if isinstance(body, dict):
        return (_telemetry_object(body),)
    if isinstance(body, list):
        entries = []
        for item in body:
            if not isinstance(item, dict):
                raise ThingsBoardError(
                    f"telemetry array items must be objects, got {_json.type_name(item)}"
                )
            entries.append(_telemetry_object(item))
        return tuple(entries)
    raise ThingsBoardError(f"telemetry must be an object or array, got {_json.type_name(body)}")


def _scalar_text(value: JSONValue) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):  # a tuple: no union built per call
        return _json.encode(value).decode()
    return None


@dataclass(frozen=True)
class OtaReport:
    """The OTA keys found in one telemetry message.

    ``state`` is the verbatim ``fw_state``; unknown values are kept as sent.
    ``ts`` is the timestamp of the entry that carried the state, if any.
    """

    package: PackageType
    current_title: str | None = None
    current_version: str | None = None
    state: str | None = None
    error: str | None = None
    ts: int | None = None

    @property
    def fw_state(self) -> FwState | None:
        return None if self.state is None else parse_fw_state(self.state)

    @property
    def canonical_state(self) -> UpdateState | None:
        return None if self.state is None else fw_state_to_state(self.state)

    def same_as(self, other: OtaReport) -> bool:
        """Whether ``other`` says the same (its timestamp aside): a device repeating
        ``DOWNLOADING`` while it downloads."""
        return (
            self.package is other.package
            and self.state == other.state
            and self.current_title == other.current_title
            and self.current_version == other.current_version
            and self.error == other.error
        )


# (telemetry key, OtaReport field) per package, built once: telemetry is the busiest path
_OTA_KEYS = {
    package: (
        (f"current_{package.prefix}_title", "current_title"),
        (f"current_{package.prefix}_version", "current_version"),
        (f"{package.prefix}_state", "state"),
        (f"{package.prefix}_error", "error"),
    )
    for package in PackageType
}


def extract_ota_report(
    entries: Iterable[TelemetryEntry], package: PackageType = PackageType.FIRMWARE
) -> OtaReport | None:
    """Collect ``current_fw_*``, ``fw_state`` and ``fw_error`` from telemetry.

    Entries are merged in order (a later value wins). ``None`` when no OTA key
    for ``package`` is present.
    """
    names = _OTA_KEYS[package]
    found: dict[str, str | None] = {}
    ts: int | None = None
    for entry in entries:
        values = entry.values
        for key, attr in names:
            if key in values:
                found[attr] = _scalar_text(values[key])
                if attr == "state":
                    ts = entry.ts
    if not found:
        return None
    return OtaReport(
        package,
        current_title=found.get("current_title"),
        current_version=found.get("current_version"),
        state=found.get("state"),
        error=found.get("error"),
        ts=ts,
    )


def extract_ota_reports(entries: Iterable[TelemetryEntry]) -> list[OtaReport]:
    """The firmware and the software report among telemetry entries, those present."""
    entries = tuple(entries)
    return [
        report
        for package in PACKAGES
        if (report := extract_ota_report(entries, package)) is not None
    ]


class UpdatedCheck(Enum):
    """How an ``UPDATED`` report compares with the target package."""

    CONFIRMED = "confirmed"
    VERSION_MISMATCH = "version mismatch"
    VERSION_UNKNOWN = "version unknown"


def check_updated(report: OtaReport, target_title: str, target_version: str) -> UpdatedCheck:
    """Cross-check an ``UPDATED`` report against ``current_*_title/version``.

    ``VERSION_UNKNOWN`` when the report does not carry the current version
    (the caller may fall back to the last one it knows).
    """
    if report.current_version is None:
        return UpdatedCheck.VERSION_UNKNOWN
    if report.current_version != target_version or (
        report.current_title is not None and report.current_title != target_title
    ):
        return UpdatedCheck.VERSION_MISMATCH
    return UpdatedCheck.CONFIRMED


def build_state_telemetry(
    package: PackageType,
    state: FwState | str,
    *,
    current_title: str,
    current_version: str,
    error: str | None = None,
) -> bytes:
    """The agent's state report, e.g. seed 003 step 5::

    {"current_fw_title":"CIM-168","current_fw_version":"1.0.0","fw_state":"DOWNLOADING"}
    """
    p = package.prefix
    body: JSONObject = {
        f"current_{p}_title": current_title,
        f"current_{p}_version": current_version,
        f"{p}_state": str(state),
    }
    if error is not None:
        body[f"{p}_error"] = error
    return _json.encode(body)


def build_telemetry(values: Mapping[str, JSONValue], ts: int | None = None) -> bytes:
    """A telemetry message: the flat object, or ``{"ts":…,"values":…}`` with ``ts``."""
    if ts is None:
        return _json.encode(dict(values))
    return _json.encode({"ts": ts, "values": dict(values)})


# --------------------------------------------------------------------------
# Chunk protocol (section 7)


@dataclass(frozen=True)
class SendChunk:
    """PUBACK the request, then publish bytes ``[start, end)`` on ``topic``.

    An empty range (past the end) is published as an empty payload.
    ``remember_size`` is the size to store for this ``rid`` in this session,
    when the request carried one.
    """

    topic: str
    start: int
    end: int
    remember_size: int | None


@dataclass(frozen=True)
class ChunkError:
    """Publish ``error`` on ``v2/fw/error``, then close; no PUBACK."""

    error: str
    remember_size: int | None = None
    topic: str = OTA_ERROR_TOPIC
    disconnect_reason: int = DISCONNECT_IMPLEMENTATION_SPECIFIC


@dataclass(frozen=True)
class CloseConnection:
    """Close the connection (MQTT 5: DISCONNECT ``disconnect_reason`` first); no PUBACK."""

    reason: str
    disconnect_reason: int = DISCONNECT_CHUNK_PARSE_ERROR


@dataclass(frozen=True)
class UnknownTopic:
    """Not a chunk topic: PUBACK (MQTT 5: 0x90) and drop, no reply."""

    puback_reason: int = PUBACK_TOPIC_NAME_INVALID


ChunkDecision = SendChunk | ChunkError | CloseConnection | UnknownTopic


def parse_chunk_size(payload: Payload) -> int | None:
    """The chunk size of a request: ``None`` for an empty payload.

    Raises :class:`ThingsBoardError` when the payload is not an (optionally
    signed) ASCII decimal integer.
    """
    if len(payload) == 0:
        return None
    text = _json.as_text(payload, _error, "chunk size")
    size = _parse_decimal(text)
    if size is None:
        raise ThingsBoardError(f"chunk size {text[:40]!r} is not a decimal integer")
    return size


def effective_chunk_size(requested: int | None, remembered: int | None) -> int:
    """A size ``> 0`` is used; otherwise the one remembered for the ``rid``, else 0."""
    if requested is not None and requested > 0:
        return requested
    return remembered or 0


def chunk_range(file_size: int, chunk_size: int, chunk: int) -> tuple[int, int]:
    """Bytes ``[size·n, size·n+size)`` clipped to the file; size ≤ 0 is the whole file."""
    if chunk_size <= 0:
        return 0, file_size
    start = min(chunk_size * chunk, file_size)
    return start, min(start + chunk_size, file_size)


def decide_chunk(
    topic: str | ChunkTopic,
    payload: Payload,
    *,
    remembered_size: int | None,
    package_size: int | None,
    external_url: bool = False,
    max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE,
) -> ChunkDecision:
    """Every row of the chunk table as one decision.

    ``remembered_size`` is the size stored for this ``rid`` in this session;
    ``package_size`` the byte size of the package the ``rid`` resolves to (the
    device's currently assigned one on first use), ``None`` when nothing is
    assigned; ``external_url`` when that package only has an external URL.
    Checks run in upstream order: payload, size limit, package. ``topic`` may
    come already parsed, as the hub's chunk path has it.
    """
    parsed = parse_chunk_topic(topic) if isinstance(topic, str) else topic
    if parsed is None:
        return UnknownTopic()
    try:
        requested = parse_chunk_size(payload)
    except ThingsBoardError as exc:
        return CloseConnection(str(exc))
    remember = requested if requested is not None and requested > 0 else None
    size = effective_chunk_size(requested, remembered_size)
    if size > max_chunk_size:
        return ChunkError(ERROR_PAYLOAD_TOO_LARGE, remember)
    if package_size is None:
        return ChunkError(ERROR_NOT_FOUND, remember)
    if external_url:
        return ChunkError(ERROR_FAILURE, remember)
    start, end = chunk_range(package_size, size, parsed.chunk)
    return SendChunk(parsed.response_topic, start, end, remember)


# --------------------------------------------------------------------------
# HTTP firmware API (section 8)


def http_firmware_path(token: str, package: PackageType = PackageType.FIRMWARE) -> str:
    """``/api/v1/{token}/firmware`` or ``/api/v1/{token}/software``."""
    kind = "firmware" if package is PackageType.FIRMWARE else "software"
    return f"/api/v1/{token}/{kind}"


@dataclass(frozen=True)
class HttpFirmwareDecision:
    """Status of a ``GET /api/v1/{token}/firmware``; for 200 the byte range."""

    status: int
    start: int = 0
    end: int = 0
    reason: str = ""


def _http_int(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name, "")
    if raw == "":
        return 0  # absent or empty: the declared default
    return _parse_int32(raw)


def decide_http_firmware(
    params: Mapping[str, str],
    *,
    token_known: bool,
    package: PackageAttributes | None,
) -> HttpFirmwareDecision:
    """The status rules of the HTTP firmware endpoint.

    ``params`` are the query parameters; ``package`` the device's assigned
    package (``None`` when nothing is assigned). Order: parameter binding
    (400), token (401), nothing assigned or external URL (404), title/version
    mismatch (400), else 200 with ``[size·chunk, size·chunk+size)``.
    """
    title = params.get("title")
    version = params.get("version")
    if title is None or version is None:
        return HttpFirmwareDecision(400, reason="title and version are required")
    size = _http_int(params, "size")
    chunk = _http_int(params, "chunk")
    if size is None or chunk is None:
        return HttpFirmwareDecision(400, reason="size and chunk must be integers")
    if not token_known:
        return HttpFirmwareDecision(401, reason="unknown device token")
    if package is None or package.is_external or package.size is None:
        return HttpFirmwareDecision(404, reason="no package with data is assigned")
    if title != package.title or version != package.version:
        return HttpFirmwareDecision(
            400, reason="title or version differs from the assigned package"
        )
    if size > 0 and chunk < 0:
        # Upstream fails with a server error here; a negative index is the client's fault.
        return HttpFirmwareDecision(400, reason="chunk must not be negative")
    start, end = chunk_range(package.size, size, chunk)
    return HttpFirmwareDecision(200, start, end)


def http_firmware_headers(file_name: str, content_type: str) -> dict[str, str]:
    """Response headers of a successful firmware download."""
    return {
        "Content-Disposition": f"attachment;filename={file_name}",
        "x-filename": file_name,
        "Content-Type": content_type,
    }


# --------------------------------------------------------------------------
# Connection and credentials (section 1)


@dataclass(frozen=True)
class BasicMqttCredentials:
    """An ``MQTT_BASIC`` credential: ``{"clientId":…,"userName":…,"password":…}``."""

    client_id: str | None = None
    user_name: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if not self.client_id and not self.user_name:
            raise ThingsBoardError("both MQTT client id and user name are empty")
        if self.password and not self.user_name:
            raise ThingsBoardError("a password cannot be set without a user name")

    def to_json(self) -> bytes:
        body: JSONObject = {}
        if self.client_id:
            body["clientId"] = self.client_id
        if self.user_name:
            body["userName"] = self.user_name
        if self.password:
            body["password"] = self.password
        return _json.encode(body)

    def accepts_password(self, sent: str | None) -> bool:
        """A stored password must match exactly; without one any password is fine."""
        if not self.password:
            return True
        return sent == self.password


def parse_basic_credentials(payload: Payload) -> BasicMqttCredentials:
    """Parse a basic credential value; empty strings count as unset."""
    body = _json.decode_object(payload, _error, "basic MQTT credentials")
    values: dict[str, str | None] = {}
    for name in ("clientId", "userName", "password"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise ThingsBoardError(f"{name} must be a string, got {_json.type_name(value)}")
        values[name] = value or None
    return BasicMqttCredentials(values["clientId"], values["userName"], values["password"])


class CredentialKind(Enum):
    """One credential lookup the server tries for a CONNECT."""

    PROVISION = "provision"
    CLIENT_ID = "client id"
    CLIENT_ID_AND_USER_NAME = "client id and user name"
    #: An access token equal to the user name, or a basic credential with only a user name.
    USER_NAME = "user name"


@dataclass(frozen=True)
class CredentialLookup:
    kind: CredentialKind
    client_id: str | None = None
    user_name: str | None = None


def credential_lookups(client_id: str, user_name: str | None) -> tuple[CredentialLookup, ...]:
    """The lookups for a CONNECT (without a client certificate), in order.

    The first lookup that finds a credential decides. For
    ``CLIENT_ID_AND_USER_NAME`` a stored password that does not match rejects
    the connection instead of falling through.
    """
    if user_name == PROVISION or client_id == PROVISION:
        return (CredentialLookup(CredentialKind.PROVISION),)
    if not user_name:
        if not client_id:
            return ()
        return (CredentialLookup(CredentialKind.CLIENT_ID, client_id=client_id),)
    lookups: list[CredentialLookup] = []
    if client_id:
        lookups.append(
            CredentialLookup(CredentialKind.CLIENT_ID_AND_USER_NAME, client_id, user_name)
        )
    lookups.append(CredentialLookup(CredentialKind.USER_NAME, user_name=user_name))
    return tuple(lookups)


@dataclass(frozen=True)
class ConnackRefusal:
    """CONNACK codes for a refused CONNECT."""

    v311: int
    v5: int


def connect_refusal(
    *, client_id: str, user_name: str | None, password: bytes | str | None
) -> ConnackRefusal:
    """Refusal codes when no credential matched.

    A username or password sent: bad user name or password (4 / 0x86). Only a
    client id: identifier rejected (2 / 0x85). Anything else: not authorized
    (5 / 0x87).
    """
    if user_name is not None or password is not None:
        return ConnackRefusal(4, 0x86)
    if client_id:
        return ConnackRefusal(2, 0x85)
    return ConnackRefusal(5, 0x87)


# --------------------------------------------------------------------------
# Client-side RPC the SDK sends on connect (section 10)

SESSION_LIMITS_METHOD: Final = "getSessionLimits"


@dataclass(frozen=True)
class RpcRequest:
    """A device-to-server RPC, ``{"method":…,"params":…}``."""

    request_id: int
    method: str
    params: JSONValue
    family: TopicFamily = TopicFamily.V1

    @property
    def response_topic(self) -> str:
        return rpc_response_topic(self.request_id, self.family)


def parse_rpc_request(
    request_id: int, payload: Payload, family: TopicFamily = TopicFamily.V1
) -> RpcRequest:
    """Parse a client RPC body; ``method`` must be a string."""
    _require_json_family(family, "an RPC request")
    body = _json.decode_object(payload, _error, "RPC request")
    method = body.get("method")
    if not isinstance(method, str):
        raise ThingsBoardError(f"RPC method must be a string, got {_json.type_name(method)}")
    return RpcRequest(request_id, method, body.get("params"), family)


def build_session_limits(
    *,
    max_payload_size: int,
    max_inflight_messages: int,
    messages: str,
    telemetry_messages: str,
    telemetry_data_points: str,
) -> bytes:
    """The answer to ``getSessionLimits``."""
    return _json.encode(
        {
            "maxPayloadSize": max_payload_size,
            "maxInflightMessages": max_inflight_messages,
            "rateLimits": {
                "messages": messages,
                "telemetryMessages": telemetry_messages,
                "telemetryDataPoints": telemetry_data_points,
            },
        }
    )
