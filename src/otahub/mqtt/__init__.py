"""MQTT 3.1.1 / 5.0: a sans-IO codec and the hub's server endpoint.

The names below are the package's public surface: the codec, the
driver-facing interface (``Endpoint`` and ``Client`` with the hook types
they take), and what the hub needs to build and start the endpoint. The
modules behind them are the endpoint's own.

The package's modules are compiled with mypyc when otahub is built
(``setup.py``); the same sources run as plain Python otherwise.
"""

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otahub.mqtt import codec
from otahub.mqtt.anonymous import LOOPBACK, parse_networks, peer_in
from otahub.mqtt.codec import Decoder, encode
from otahub.mqtt.errors import MQTTError
from otahub.mqtt.hooks import (
    NO_ACK,
    Acl,
    AnonymousPolicy,
    Authenticator,
    CertificateCheck,
    Client,
    ConnectInfo,
    Endpoint,
    Identity,
    InterceptHandler,
    MessageCallback,
    Refusal,
    SessionObserver,
    SubscriptionObserver,
)
from otahub.mqtt.limits import Limits
from otahub.mqtt.packets import Publish
from otahub.mqtt.reason_codes import ReasonCode

if TYPE_CHECKING:
    from otahub.mqtt.persistence import LogStore
    from otahub.mqtt.server import MQTTServer, ServerConfig

# The server and its store load asyncio and more: imported when first named,
# so what uses only the codec (the simulator, the agent) does not pay for them.
_SERVER_NAMES = {
    "LogStore": "otahub.mqtt.persistence",
    "MQTTServer": "otahub.mqtt.server",
    "ServerConfig": "otahub.mqtt.server",
}

__all__ = [
    "LOOPBACK",
    "NO_ACK",
    "Acl",
    "AnonymousPolicy",
    "Authenticator",
    "CertificateCheck",
    "Client",
    "ConnectInfo",
    "Decoder",
    "Endpoint",
    "Identity",
    "InterceptHandler",
    "Limits",
    "LogStore",
    "MQTTError",
    "MQTTServer",
    "MessageCallback",
    "Publish",
    "ReasonCode",
    "Refusal",
    "ServerConfig",
    "SessionObserver",
    "SubscriptionObserver",
    "compiled",
    "encode",
    "parse_networks",
    "peer_in",
    "stale_compiled_modules",
]


def __getattr__(name: str) -> Any:
    module = _SERVER_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def compiled() -> bool:
    """Whether the endpoint runs as compiled modules rather than Python source."""
    return not codec.__file__.endswith(".py")


def stale_compiled_modules() -> list[str]:
    """Modules whose source changed after they were compiled (an in-place build gone stale).

    Python imports the compiled module whatever its source says, so an edit
    takes effect only after the next build. Only a source checkout builds in
    place; an installed package's file times say nothing about that.
    """
    package = Path(__file__).parent
    if not (package.parent.parent.name == "src" and (package.parents[2] / "setup.py").exists()):
        return []
    stale = []
    for source in sorted(package.glob("*.py")):
        for built in source.parent.glob(source.stem + ".*.so"):
            if built.stat().st_mtime < source.stat().st_mtime:
                stale.append(source.stem)
                break
    return stale
