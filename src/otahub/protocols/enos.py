"""EnOS device OTA over MQTT (the ``enos`` dialect).

Pure protocol layer shared by the hub driver and the agent: the signed
CONNECT (parsing, verification and signing), the ``/sys/{pk}/{dk}/ota/device/…``
topics, the request/reply envelope, the inform/upgrade/progress/getversion
payloads, the error codes, and the EnOS HTTP broker's login and download
requests (the firmware download path of ``enos-http-sdk``).

Mapping to canonical states:

=================  ================================================================
canonical          EnOS
=================  ================================================================
``pending``        To be Pushed (the hub's own bookkeeping)
``sent``           Pushed: ``upgrade`` published, or ``getversion`` answered with it
``downloading``    ``progress`` with step ``0`` … ``99``; percent = step
``installing``     ``progress`` with step ``100`` (the device has the image and
                   goes on to flash or reboot)
``succeeded``      ``inform`` whose version equals the target (:func:`inform_outcome`)
``failed``         ``progress`` with a negative step: code = step, reason from
                   the step's meaning and ``desc`` (``-5`` is "declined by
                   device"); an ``inform`` of another version after step 100
                   or after the deadline ("rolled back"); a deadline
=================  ================================================================

EnOS reports no separate downloaded/verified steps, so those states are skipped.
Routing is by topic; the ``method`` string is never checked, because the
documentation and the SDKs disagree on it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum
from typing import Final, TypeAlias
from urllib.parse import urlencode

from otahub.protocols import _json
from otahub.protocols._json import JSONObject, JSONValue, Payload
from otahub.protocols.states import UpdateState


class EnosCode(IntEnum):
    """Reply codes used by the dialect."""

    SUCCESS = 200
    #: Sent by the Python SDK (as the string ``"500"``) when a handler raised.
    HANDLER_FAILED = 500
    #: Progress reply: there is no OTA task for this device.
    DEVICE_TASK_NOT_FOUND = 764
    #: Progress reply: the device's task has not been pushed or started yet.
    DEVICE_TASK_NOT_START = 765
    #: Sent by the Python SDK (as ``"1101"``) when no upgrade handler is registered.
    HANDLER_NOT_REGISTERED = 1101
    MESSAGE_TOO_LARGE = 1008
    NO_WRITE_PERMISSION = 1009
    PAYLOAD_FORMAT_ERROR = 1220
    EMPTY_PAYLOAD = 1251
    #: Documented, but never to be used: the SDKs' method strings differ from the docs.
    METHODS_NOT_CONSISTENT = 1260


CODE_MESSAGES: Final[Mapping[int, str]] = {
    EnosCode.SUCCESS: "",
    EnosCode.HANDLER_FAILED: "command handler execution failed",
    EnosCode.DEVICE_TASK_NOT_FOUND: "Device task not found",
    EnosCode.DEVICE_TASK_NOT_START: "Device task not start",
    EnosCode.HANDLER_NOT_REGISTERED: "downstream command handler not registered",
    EnosCode.MESSAGE_TOO_LARGE: "message too large",
    EnosCode.NO_WRITE_PERMISSION: "Publish to topic with no write permission",
    EnosCode.PAYLOAD_FORMAT_ERROR: "payload format error",
    EnosCode.EMPTY_PAYLOAD: "empty payload",
    EnosCode.METHODS_NOT_CONSISTENT: "Methods not consistent",
}


class EnosError(ValueError):
    """A login or message that breaks the EnOS protocol.

    ``code`` is the reply code to answer a request with (1220 for a malformed
    payload, 1251 for an empty one); for a login error the CONNACK is 4.
    """

    def __init__(self, message: str, code: int = EnosCode.PAYLOAD_FORMAT_ERROR) -> None:
        super().__init__(message)
        self.code = int(code)


def _error(message: str) -> EnosError:
    return EnosError(message)


#: CONNACK return code for a refused login (bad user name or password).
CONNACK_BAD_CREDENTIALS: Final = 4

# --------------------------------------------------------------------------
# Signing


class SignMethod(StrEnum):
    """The hash behind a ``signmethod``; the ``hmac*`` names are plain-hash aliases."""

    SHA256 = "sha256"
    SHA1 = "sha1"
    MD5 = "md5"


_SIGN_METHOD_NAMES: Final[Mapping[str, SignMethod]] = {
    "sha256": SignMethod.SHA256,
    "hmacsha256": SignMethod.SHA256,
    "sha1": SignMethod.SHA1,
    "hmacsha1": SignMethod.SHA1,
    "md5": SignMethod.MD5,
    "hmacmd5": SignMethod.MD5,
}


def parse_sign_method(name: str) -> SignMethod:
    """Map a ``signmethod`` case-insensitively; ``hmacsha256`` means plain SHA-256."""
    method = _SIGN_METHOD_NAMES.get(name.strip().lower())
    if method is None:
        raise EnosError(f"unknown sign method {name!r}")
    return method


def sign_content(params: Mapping[str, str], secret: str) -> str:
    """Parameters in sorted key order, each name directly followed by its value, then the secret."""
    return "".join(f"{key}{params[key]}" for key in sorted(params)) + secret


def sign(params: Mapping[str, str], secret: str, method: SignMethod) -> str:
    """The lowercase hex hash of :func:`sign_content`."""
    data = sign_content(params, secret).encode("utf-8")
    return hashlib.new(method.value, data).hexdigest()


def _same_hex(expected_lower: str, received: str) -> bool:
    # Case-insensitive, constant-time; non-ASCII input can never match.
    try:
        candidate = received.lower().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected_lower.encode("ascii"), candidate)


# --------------------------------------------------------------------------
# Login (CONNECT)


class SecretKind(Enum):
    DEVICE_SECRET = "deviceSecret"
    PRODUCT_SECRET = "productSecret"


class SecureMode(IntEnum):
    """``securemode``: which secret signs the login."""

    #: Static login with the deviceSecret.
    STATIC = 2
    #: Dynamic activation with the productSecret; the server then sends the deviceSecret.
    DYNAMIC_ACTIVATION = 3
    #: Integration channel with the productSecret (deviceKey ``%channel%``).
    INTEGRATION = 4

    @property
    def secret_kind(self) -> SecretKind:
        if self is SecureMode.STATIC:
            return SecretKind.DEVICE_SECRET
        return SecretKind.PRODUCT_SECRET


_SECURE_MODES: Final[Mapping[str, SecureMode]] = {str(int(mode)): mode for mode in SecureMode}

#: The deviceKey of an integration-channel login (``securemode=4``).
INTEGRATION_DEVICE_KEY: Final = "%channel%"


@dataclass(frozen=True)
class Login:
    """A parsed EnOS CONNECT.

    ``client_id`` is the part of the MQTT client id before the first ``|``,
    kept verbatim (``{…}`` extras included) because it is signed as sent.
    ``timestamp`` is signed exactly as sent; ``timestamp_skew`` reads it as a time.
    """

    client_id: str
    device_key: str
    product_key: str
    secure_mode: SecureMode
    sign_method: SignMethod
    timestamp: str | None
    password: str

    @property
    def secret_kind(self) -> SecretKind:
        return self.secure_mode.secret_kind

    @property
    def sign_params(self) -> dict[str, str]:
        params = {
            "clientId": self.client_id,
            "deviceKey": self.device_key,
            "productKey": self.product_key,
        }
        if self.timestamp is not None:
            params["timestamp"] = self.timestamp
        return params

    def expected_password(self, secret: str) -> str:
        """The password this login should carry, in lowercase hex."""
        return sign(self.sign_params, secret, self.sign_method)

    def verify(self, secret: str) -> bool:
        """Compare the password with the signature, ignoring hex case."""
        return _same_hex(self.expected_password(secret), self.password)


def _parse_client_id_params(section: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in section.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise EnosError(f"client id parameter {item!r} is not key=value")
        params[key.strip().lower()] = value.strip()
    return params


def parse_login(client_id: str, username: str | None, password: str | bytes | None) -> Login:
    """Parse the CONNECT fields of an EnOS login.

    Client id ``{clientId}|securemode=2,signmethod=sha256,timestamp=…|``,
    username ``{deviceKey}&{productKey}``. The key=value pairs are trimmed;
    ``signmethod`` defaults to SHA-1 (the Java SDK's fallback) and a missing
    ``timestamp`` is left out of the signed content. Raises :class:`EnosError`.
    """
    if not username:
        raise EnosError("username must be {deviceKey}&{productKey}")
    device_key, sep, product_key = username.partition("&")
    if not sep or not device_key or not product_key:
        raise EnosError(f"username {username!r} is not {{deviceKey}}&{{productKey}}")
    head, sep, rest = client_id.partition("|")
    if not sep:
        raise EnosError(f"client id {client_id!r} lacks the |securemode=…| section")
    params = _parse_client_id_params(rest.partition("|")[0])
    raw_mode = params.get("securemode")
    if raw_mode is None:
        raise EnosError("client id lacks securemode")
    secure_mode = _SECURE_MODES.get(raw_mode)
    if secure_mode is None:
        raise EnosError(f"unsupported securemode {raw_mode!r}")
    method_name = params.get("signmethod")
    sign_method = SignMethod.SHA1 if method_name is None else parse_sign_method(method_name)
    if password is None:
        raise EnosError("password is missing")
    if isinstance(password, bytes):
        try:
            password = password.decode("utf-8")
        except UnicodeDecodeError:
            raise EnosError("password is not valid UTF-8") from None
    return Login(
        client_id=head,
        device_key=device_key,
        product_key=product_key,
        secure_mode=secure_mode,
        sign_method=sign_method,
        timestamp=params.get("timestamp"),
        password=password,
    )


_TIMESTAMP = re.compile(r"[0-9]{1,16}(\.[0-9]{1,9})?")


def timestamp_skew(timestamp: str | None, now: float) -> float | None:
    """Seconds a login's ``timestamp`` lies after ``now`` (negative: before it).

    The stamp is milliseconds since the epoch, an integer (the Java SDK) or a
    float string such as ``1795459275275.31`` (the Python SDK). ``None`` when
    it is missing or not such a number. The reference signs the stamp but
    never checks it; a freshness window built on this is the hub's own rule.
    """
    if timestamp is None or not _TIMESTAMP.fullmatch(timestamp):
        return None
    return float(timestamp) / 1000.0 - now


@dataclass(frozen=True)
class LoginCredentials:
    """The three CONNECT fields of a login."""

    client_id: str
    username: str
    password: str


def build_login(
    product_key: str,
    device_key: str,
    secret: str,
    *,
    timestamp: str,
    secure_mode: SecureMode = SecureMode.STATIC,
    sign_method: SignMethod = SignMethod.SHA256,
    client_id: str | None = None,
    uppercase: bool = True,
) -> LoginCredentials:
    """Sign a login the documented way (``toUpperCase(sha256(content+secret))``).

    ``client_id`` defaults to the deviceKey, or to the productKey for the
    integration channel. ``timestamp`` is a string so callers choose its form.
    """
    if client_id is None:
        client_id = product_key if secure_mode is SecureMode.INTEGRATION else device_key
    for name, value in (
        ("client id", client_id),
        ("deviceKey", device_key),
        ("productKey", product_key),
    ):
        if not value or "|" in value or "&" in value:
            raise EnosError(f"{name} must be non-empty without '|' or '&': {value!r}")
    params = {
        "clientId": client_id,
        "deviceKey": device_key,
        "productKey": product_key,
        "timestamp": timestamp,
    }
    password = sign(params, secret, sign_method)
    return LoginCredentials(
        client_id=(
            f"{client_id}|securemode={int(secure_mode)},"
            f"signmethod={sign_method.value},timestamp={timestamp}|"
        ),
        username=f"{device_key}&{product_key}",
        password=password.upper() if uppercase else password,
    )


# --------------------------------------------------------------------------
# Topics


class OtaKind(StrEnum):
    """The four OTA topics."""

    INFORM = "inform"
    UPGRADE = "upgrade"
    PROGRESS = "progress"
    GETVERSION = "getversion"


REPLY_SUFFIX: Final = "_reply"

#: Method strings as documented, used when building requests.
METHODS: Final[Mapping[OtaKind, str]] = {
    OtaKind.INFORM: "ota.device.inform",
    OtaKind.UPGRADE: "ota.device.upgrade",
    OtaKind.PROGRESS: "ota.device.progress",
    OtaKind.GETVERSION: "ota.device.getversion",
}
#: What the Python SDK 0.1.1 sends instead; accepted like any other method string.
PYTHON_SDK_METHODS: Final[Mapping[OtaKind, str]] = {
    OtaKind.INFORM: "ota.inform",
    OtaKind.PROGRESS: "ota.progress",
    OtaKind.GETVERSION: "Ota.device.getversion",
}


def _check_key(name: str, value: str) -> None:
    if not value or any(c in value for c in "/+#"):
        raise EnosError(f"{name} must be non-empty without '/', '+' or '#': {value!r}")


@dataclass(frozen=True)
class OtaTopic:
    """``/sys/{pk}/{dk}/ota/device/{kind}`` or its ``_reply``."""

    product_key: str
    device_key: str
    kind: OtaKind
    is_reply: bool = False

    def __str__(self) -> str:
        return ota_topic(self.product_key, self.device_key, self.kind, reply=self.is_reply)

    @property
    def from_device(self) -> bool:
        """Requests other than ``upgrade``, and the ``upgrade_reply``, come from the device."""
        return (self.kind is OtaKind.UPGRADE) == self.is_reply

    def reply(self) -> OtaTopic:
        """The topic a reply to this request goes to."""
        if self.is_reply:
            raise EnosError(f"{self} is already a reply topic")
        return OtaTopic(self.product_key, self.device_key, self.kind, is_reply=True)


# every device's OTA topics, requests and replies alike
OTA_FILTER = "/sys/+/+/ota/device/+"


def ota_topic(product_key: str, device_key: str, kind: OtaKind, *, reply: bool = False) -> str:
    """``/sys/{pk}/{dk}/ota/device/{kind}[_reply]``."""
    _check_key("productKey", product_key)
    _check_key("deviceKey", device_key)
    return f"/sys/{product_key}/{device_key}/ota/device/{kind.value}{REPLY_SUFFIX if reply else ''}"


def reply_topic(request_topic: str) -> str:
    """Replies go to exactly ``<request topic>_reply``."""
    return request_topic + REPLY_SUFFIX


def parse_ota_topic(topic: str) -> OtaTopic | None:
    """Split an OTA topic into keys and kind; ``None`` for anything else."""
    parts = topic.split("/")
    if len(parts) != 7 or parts[0] != "" or parts[1] != "sys" or parts[4:6] != ["ota", "device"]:
        return None
    product_key, device_key, last = parts[2], parts[3], parts[6]
    if not product_key or not device_key or any(c in topic for c in "+#"):
        return None
    is_reply = last.endswith(REPLY_SUFFIX)
    name = last[: -len(REPLY_SUFFIX)] if is_reply else last
    try:
        kind = OtaKind(name)
    except ValueError:
        return None
    return OtaTopic(product_key, device_key, kind, is_reply)


class TopicAccess(Enum):
    """Whether a device may publish on an OTA topic."""

    OWN = "own"
    #: A request for a device this connection does not speak for: reply 1009.
    FOREIGN_REQUEST = "foreign request"
    #: A reply with foreign keys (the Python SDK's ``/sys/None/None/…/upgrade_reply``):
    #: acknowledge and ignore, never disconnect.
    FOREIGN_REPLY = "foreign reply"


def topic_access(topic: OtaTopic, allowed: Collection[tuple[str, str]]) -> TopicAccess:
    """Check ``topic`` against the ``(productKey, deviceKey)`` pairs of the connection.

    ``allowed`` holds the logged-in device and, for a gateway, its sub-devices.
    """
    if (topic.product_key, topic.device_key) in allowed:
        return TopicAccess.OWN
    return TopicAccess.FOREIGN_REPLY if topic.is_reply else TopicAccess.FOREIGN_REQUEST


def activate_info_topic(product_key: str, device_key: str) -> str:
    """Where a dynamically activated device receives its deviceSecret."""
    _check_key("productKey", product_key)
    _check_key("deviceKey", device_key)
    return f"/ext/session/{product_key}/{device_key}/thing/activate/info"


# --------------------------------------------------------------------------
# Envelope

#: A message id as sent: devices send strings, and a reply must echo the same JSON value.
MessageId: TypeAlias = "str | int | float"


def _message_id(body: JSONObject) -> MessageId | None:
    raw = body.get("id")
    if raw is None or isinstance(raw, str | float) or _json.is_int(raw):
        return raw
    raise EnosError(f"message id must be a string or number, got {_json.type_name(raw)}")


def _decode_body(payload: Payload, what: str) -> JSONObject:
    if len(payload) == 0:
        raise EnosError(f"{what} is empty", EnosCode.EMPTY_PAYLOAD)
    return _json.decode_object(payload, _error, what)


@dataclass(frozen=True)
class EnosRequest:
    """``{"id":"123","version":"1.0","method":"…","params":{…}}``.

    ``id`` is ``None`` when absent or null. ``method`` and ``version`` are kept
    for logging only.
    """

    id: MessageId | None
    params: JSONObject
    method: str | None = None
    version: str | None = None


def parse_request(payload: Payload) -> EnosRequest:
    """Parse a request or command; ``params`` must be an object when present.

    Raises :class:`EnosError` with code 1251 for an empty payload and 1220
    for anything malformed.
    """
    body = _decode_body(payload, "request")
    params = body.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise EnosError(f"params must be an object, got {_json.type_name(params)}")
    method = body.get("method")
    version = body.get("version")
    return EnosRequest(
        id=_message_id(body),
        params=params,
        method=method if isinstance(method, str) else None,
        version=version if isinstance(version, str) else None,
    )


def build_request(
    request_id: MessageId, method: str, params: Mapping[str, JSONValue], version: str = "1.0"
) -> bytes:
    """A request in the documented key order."""
    return _json.encode(
        {"id": request_id, "version": version, "method": method, "params": dict(params)}
    )


@dataclass(frozen=True)
class EnosReply:
    """``{"id":"123","code":200,"data":…,"message":""}``; ``code`` parsed to an int."""

    id: MessageId | None
    code: int
    data: JSONValue = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.code == EnosCode.SUCCESS


def parse_reply(payload: Payload) -> EnosReply:
    """Parse a reply; ``code`` may be an integer or a decimal string (SDK error replies)."""
    body = _decode_body(payload, "reply")
    raw_code = body.get("code")
    code: int | None = None
    if _json.is_int(raw_code):
        code = raw_code
    elif isinstance(raw_code, str):
        code = _parse_signed(raw_code)
    if code is None:
        raise EnosError(f"reply code must be an integer, got {raw_code!r}")
    message = body.get("message")
    return EnosReply(
        id=_message_id(body),
        code=code,
        data=body.get("data"),
        message=message if isinstance(message, str) else None,
    )


def build_reply(
    request_id: MessageId | None,
    code: int = EnosCode.SUCCESS,
    data: JSONValue | Mapping[str, JSONValue] = None,
    message: str | None = None,
) -> bytes:
    """A reply echoing ``request_id`` as the same JSON value; ``code`` is an integer.

    ``data`` defaults to ``{}`` (seed 004). The id is left out when the request had none.
    """
    body: JSONObject = {}
    if request_id is not None:
        body["id"] = request_id
    body["code"] = int(code)
    body["data"] = {} if data is None else (dict(data) if isinstance(data, Mapping) else data)
    if message is not None:
        body["message"] = message
    return _json.encode(body)


def build_error_reply(request_id: MessageId | None, code: int, message: str | None = None) -> bytes:
    """A failure reply with the code's standard message unless one is given."""
    text = message if message is not None else CODE_MESSAGES.get(code, "")
    return build_reply(request_id, code, {}, text)


# --------------------------------------------------------------------------
# Payloads

#: ``fileSize`` must fit a Java ``int``; the Java SDKs cast it.
MAX_FILE_SIZE: Final = 2**31 - 1


@dataclass(frozen=True)
class Firmware:
    """The flat upgrade params (also one ``getversion`` entry).

    ``sha256`` is otahub's optional extension; the SDKs ignore unknown keys.
    """

    version: str
    sign: str
    file_url: str
    file_size: int
    sign_method: str = "md5"
    sha256: str | None = None

    def to_params(self) -> JSONObject:
        if not 0 <= self.file_size <= MAX_FILE_SIZE:
            raise EnosError(f"fileSize must be an integer below 2^31, got {self.file_size}")
        params: JSONObject = {
            "version": self.version,
            "sign": self.sign,
            "signMethod": self.sign_method,
            "fileUrl": self.file_url,
            "fileSize": self.file_size,
        }
        if self.sha256 is not None:
            params["sha256"] = self.sha256
        return params


def _string_param(params: Mapping[str, JSONValue], name: str, what: str) -> str:
    value = params.get(name)
    if not isinstance(value, str):
        raise EnosError(f"{what} {name} must be a string, got {_json.type_name(value)}")
    return value


def parse_firmware(params: Mapping[str, JSONValue]) -> Firmware:
    """Read upgrade params or a ``getversion`` entry; raises :class:`EnosError`."""
    size = params.get("fileSize")
    if not _json.is_int(size) or size < 0:
        raise EnosError(f"firmware fileSize must be a non-negative integer, got {size!r}")
    sha256 = params.get("sha256")
    if sha256 is not None and not isinstance(sha256, str):
        raise EnosError(f"firmware sha256 must be a string, got {_json.type_name(sha256)}")
    return Firmware(
        version=_string_param(params, "version", "firmware"),
        sign=_string_param(params, "sign", "firmware"),
        sign_method=_string_param(params, "signMethod", "firmware"),
        file_url=_string_param(params, "fileUrl", "firmware"),
        file_size=size,
        sha256=sha256,
    )


def parse_inform(request: EnosRequest) -> str:
    """The version an ``inform`` reports."""
    return _string_param(request.params, "version", "inform")


def build_inform(request_id: MessageId, version: str) -> bytes:
    return build_request(request_id, METHODS[OtaKind.INFORM], {"version": version})


def build_upgrade(request_id: MessageId, firmware: Firmware) -> bytes:
    """The cloud's push; flat params, no wrapper and no firmware name."""
    return build_request(request_id, METHODS[OtaKind.UPGRADE], firmware.to_params())


def build_getversion(request_id: MessageId) -> bytes:
    return build_request(request_id, METHODS[OtaKind.GETVERSION], {})


def build_getversion_reply(request_id: MessageId | None, firmwares: Iterable[Firmware]) -> bytes:
    """``data`` is a list, one entry per upgradeable version, possibly empty."""
    return build_reply(request_id, EnosCode.SUCCESS, [fw.to_params() for fw in firmwares])


def parse_getversion_data(data: JSONValue) -> list[Firmware]:
    """Read the ``data`` list of a ``getversion_reply``."""
    if not isinstance(data, list):
        raise EnosError(f"getversion data must be a list, got {_json.type_name(data)}")
    firmwares = []
    for entry in data:
        if not isinstance(entry, dict):
            raise EnosError(f"getversion entries must be objects, got {_json.type_name(entry)}")
        firmwares.append(parse_firmware(entry))
    return firmwares


def _check_step(step: int) -> None:
    if step > 100:
        raise EnosError(f"progress step must be at most 100, got {step}")


class ProgressFailure(IntEnum):
    """The negative steps with a documented meaning; below ``-5`` is custom."""

    UPGRADE_FAILED = -1
    DOWNLOAD_FAILED = -2
    VERIFICATION_FAILED = -3
    BURNING_FAILED = -4
    DECLINED = -5


FAILURE_MEANINGS: Final[Mapping[ProgressFailure, str]] = {
    ProgressFailure.UPGRADE_FAILED: "upgrade failure",
    ProgressFailure.DOWNLOAD_FAILED: "download failure",
    ProgressFailure.VERIFICATION_FAILED: "verification failure",
    ProgressFailure.BURNING_FAILED: "burning (flash write) failure",
    ProgressFailure.DECLINED: "declined by device",
}


@dataclass(frozen=True)
class Progress:
    """A progress report: ``step`` 0…100 is a percentage, negative is a failure."""

    step: int
    desc: str | None = None

    def __post_init__(self) -> None:
        _check_step(self.step)

    @property
    def is_failure(self) -> bool:
        return self.step < 0

    @property
    def percent(self) -> int | None:
        return None if self.is_failure else self.step

    @property
    def failure(self) -> ProgressFailure | None:
        """The documented failure, ``None`` for progress and for custom codes."""
        try:
            return ProgressFailure(self.step)
        except ValueError:
            return None

    @property
    def failure_reason(self) -> str | None:
        """The step's meaning followed by ``desc``; a custom failure is its ``desc``."""
        if not self.is_failure:
            return None
        known = self.failure
        if known is None:
            return self.desc or f"custom failure {self.step}"
        meaning = FAILURE_MEANINGS[known]
        return f"{meaning}: {self.desc}" if self.desc else meaning

    @property
    def canonical_state(self) -> UpdateState:
        return progress_to_state(self)


def _parse_signed(text: str) -> int | None:
    digits = text[1:] if text.startswith("-") else text
    if digits.isascii() and digits.isdigit():
        return int(text)
    return None


def _parse_step(value: JSONValue) -> int:
    # Documented as a string; a JSON integer is accepted too.
    if _json.is_int(value):
        return value
    if isinstance(value, str):
        step = _parse_signed(value)
        if step is not None:
            return step
    raise EnosError(f'progress step must be an integer string such as "42", got {value!r}')


def parse_progress(request: EnosRequest) -> Progress:
    """Read ``{"step":"1","desc":"…"}``; ``desc`` is optional free text."""
    if "step" not in request.params:
        raise EnosError("progress lacks step")
    step = _parse_step(request.params["step"])
    desc = request.params.get("desc")
    text = desc if desc is None or isinstance(desc, str) else _json.encode(desc).decode()
    return Progress(step, text)


def build_progress(request_id: MessageId, step: int, desc: str | None = None) -> bytes:
    """The agent's progress report; ``step`` goes out as a string."""
    _check_step(step)
    params: JSONObject = {"step": str(step)}
    if desc is not None:
        params["desc"] = desc
    return build_request(request_id, METHODS[OtaKind.PROGRESS], params)


def progress_to_state(progress: Progress) -> UpdateState:
    """Negative: failed; 0…99: downloading; 100: installing."""
    if progress.is_failure:
        return UpdateState.FAILED
    if progress.step == 100:
        return UpdateState.INSTALLING
    return UpdateState.DOWNLOADING


#: Reason recorded when the device informs a version other than the target.
ROLLED_BACK_REASON: Final = "rolled back"


def inform_outcome(
    reported_version: str, target_version: str, *, completed: bool
) -> UpdateState | None:
    """What an ``inform`` means for an update in progress.

    The target version: succeeded. Another version after step 100 or after the
    deadline (``completed``): failed, :data:`ROLLED_BACK_REASON`. Otherwise
    nothing changes (the device reports its old version before upgrading).
    """
    if reported_version == target_version:
        return UpdateState.SUCCEEDED
    if completed:
        return UpdateState.FAILED
    return None


# --------------------------------------------------------------------------
# Dynamic activation (securemode=3)


def build_activate_info(
    request_id: MessageId, *, asset_id: str, product_key: str, device_key: str, device_secret: str
) -> bytes:
    """The message that hands a dynamically activated device its deviceSecret."""
    return build_request(
        request_id,
        "thing.activate.info",
        {
            "assetId": asset_id,
            "productKey": product_key,
            "deviceKey": device_key,
            "deviceSecret": device_secret,
        },
    )


# --------------------------------------------------------------------------
# HTTP broker auth (firmware download)

#: Default session lifetime of the HTTP SDK, in milliseconds.
DEFAULT_HTTP_LIFETIME_MS: Final = 300000

#: The broker's routes; ``{product_key}`` and ``{device_key}`` are filled in.
HTTP_AUTH_ROUTE: Final = "/auth/{product_key}/{device_key}"
HTTP_DOWNLOAD_ROUTE: Final = "/multipart/sys/{product_key}/{device_key}/file/download"
#: Query parameters of the download and the category of OTA files.
SESSION_ID_PARAM: Final = "sessionId"
FILE_URI_PARAM: Final = "fileUri"
CATEGORY_PARAM: Final = "category"
OTA_CATEGORY: Final = "ota"


def _route(route: str, product_key: str, device_key: str) -> str:
    _check_key("productKey", product_key)
    _check_key("deviceKey", device_key)
    return route.format(product_key=product_key, device_key=device_key)


def http_auth_path(product_key: str, device_key: str) -> str:
    """``/auth/{pk}/{dk}``."""
    return _route(HTTP_AUTH_ROUTE, product_key, device_key)


def http_download_path(product_key: str, device_key: str) -> str:
    """``/multipart/sys/{pk}/{dk}/file/download`` (query: sessionId, fileUri, category=ota)."""
    return _route(HTTP_DOWNLOAD_ROUTE, product_key, device_key)


def http_download_target(product_key: str, device_key: str, session_id: str, file_uri: str) -> str:
    """The download path with its query: ``…/file/download?sessionId=…&fileUri=…&category=ota``."""
    query = urlencode(
        {SESSION_ID_PARAM: session_id, FILE_URI_PARAM: file_uri, CATEGORY_PARAM: OTA_CATEGORY}
    )
    return f"{http_download_path(product_key, device_key)}?{query}"


def is_direct_file_url(file_url: str) -> bool:
    """An absolute http(s) ``fileUrl`` is fetched as is; anything else (a relative path,
    ``enos-connect://…``) is a ``fileUri`` for the HTTP broker's download."""
    return file_url.startswith(("http://", "https://"))


def http_auth_sign(
    product_key: str,
    device_key: str,
    lifetime: int,
    secret: str,
    sign_method: str = "sha256",
) -> str:
    """The auth ``sign``, lowercase hex of::

    sha256("deviceKey"+dk + "lifetime"+lifetime + "productKey"+pk + "signMethod"+m + secret)
    """
    params = {
        "deviceKey": device_key,
        "lifetime": str(lifetime),
        "productKey": product_key,
        "signMethod": sign_method,
    }
    return sign(params, secret, parse_sign_method(sign_method))


@dataclass(frozen=True)
class HttpAuthRequest:
    """The body of ``POST /auth/{pk}/{dk}``."""

    sign_method: str
    lifetime: int
    sign: str

    def verify(self, product_key: str, device_key: str, secret: str) -> bool:
        expected = http_auth_sign(product_key, device_key, self.lifetime, secret, self.sign_method)
        return _same_hex(expected, self.sign)


def parse_http_auth(payload: Payload) -> HttpAuthRequest:
    """Parse ``{"signMethod":"sha256","lifetime":300000,"sign":"…",…}``."""
    body = _json.decode_object(payload, _error, "auth request")
    method = body.get("signMethod")
    if not isinstance(method, str):
        raise EnosError(f"signMethod must be a string, got {_json.type_name(method)}")
    parse_sign_method(method)
    lifetime = body.get("lifetime", DEFAULT_HTTP_LIFETIME_MS)
    if not _json.is_int(lifetime) or lifetime <= 0:
        raise EnosError(f"lifetime must be a positive integer of milliseconds, got {lifetime!r}")
    signature = body.get("sign")
    if not isinstance(signature, str):
        raise EnosError(f"sign must be a string, got {_json.type_name(signature)}")
    return HttpAuthRequest(method, lifetime, signature)


def build_http_auth_request(
    product_key: str,
    device_key: str,
    secret: str,
    *,
    lifetime: int = DEFAULT_HTTP_LIFETIME_MS,
    ip_address: str = "",
    sdk_version: str = "",
) -> bytes:
    """The agent's auth body."""
    return _json.encode(
        {
            "signMethod": "sha256",
            "lifetime": lifetime,
            "sign": http_auth_sign(product_key, device_key, lifetime, secret),
            "clientInfo": {"ipAddress": ip_address, "sdkVersion": sdk_version},
            "acceptCommandTypes": [],
        }
    )


def build_http_answer(code: int, message: str, data: JSONValue = None) -> bytes:
    """A broker answer, ``{"code":…,"message":"…","data":…}``; refusals carry ``data`` null."""
    return _json.encode({"code": int(code), "message": message, "data": data})


def build_http_auth_response(session_id: str, message: str = "OK") -> bytes:
    """``{"code":200,"message":"…","data":{"sessionId":"…"}}``."""
    return build_http_answer(EnosCode.SUCCESS, message, {SESSION_ID_PARAM: session_id})


def parse_http_auth_response(payload: Payload) -> str:
    """The session id of an auth answer.

    Raises :class:`EnosError` carrying the answer's ``code`` and ``message``
    when the login was refused (``code`` ≠ 200, as the SDK checks), and
    code 1220 when the answer is malformed.
    """
    answer = parse_reply(payload)
    if not answer.ok:
        detail = f": {answer.message}" if answer.message else ""
        raise EnosError(f"login refused with code {answer.code}{detail}", answer.code)
    session_id = answer.data.get(SESSION_ID_PARAM) if isinstance(answer.data, dict) else None
    if not isinstance(session_id, str) or not session_id:
        raise EnosError(f"auth answer lacks data.{SESSION_ID_PARAM}")
    return session_id
