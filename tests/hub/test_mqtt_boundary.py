"""The hub uses the MQTT endpoint only through otahub.mqtt's public names.

Drivers, the transport and device authentication get the endpoint as an
``Endpoint`` and each client as a ``Client``; the server and session classes
behind them (their subscriptions, queues, in-flight messages, connections)
are the endpoint's own and may change without the hub noticing. Only the
wiring that builds, starts, stops and measures the endpoint names the server.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import otahub.hub
from otahub import mqtt

HUB = Path(otahub.hub.__file__).parent
PUBLIC = frozenset(mqtt.__all__)
# what builds the endpoint, for the modules that build, start, stop and measure it
SERVER_NAMES = frozenset({"MQTTServer", "ServerConfig", "LogStore"})
WIRING = frozenset({"app.py", "shutdown.py", "metrics/hub.py"})
# the endpoint's internal state, never read or written from the hub
INTERNAL_ATTRIBUTES = frozenset(
    {"subscriptions", "inflight", "queue", "incoming_qos2", "connections", "handlers"}
)
# names the hub has other uses for, internal where a client is concerned
CLIENT_INTERNALS = frozenset({"connection", "will", "expiry_interval", "persisted"})
CLIENT_CODE = ("drivers/", "device_auth/", "transport.py")


def violations(source: str, module: str) -> list[str]:
    """What ``source`` (the hub module ``module``, relative to the hub package) does
    with otahub.mqtt beyond its public names."""
    found: list[str] = []
    aliases: set[str] = set()  # local names bound to the otahub.mqtt package
    for node in ast.walk(ast.parse(source)):
        where = f"{module}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module == "otahub" and any(a.name == "mqtt" for a in node.names):
                aliases.update(a.asname or a.name for a in node.names if a.name == "mqtt")
            elif node.module.startswith("otahub.mqtt."):
                found.append(f"{where}: imports the endpoint's module {node.module}")
            elif node.module == "otahub.mqtt":
                for alias in node.names:
                    if alias.name not in PUBLIC:
                        found.append(f"{where}: {alias.name} is not a public name")
                    elif alias.name in SERVER_NAMES and module not in WIRING:
                        found.append(f"{where}: {alias.name} outside the endpoint's wiring")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "otahub.mqtt" or alias.name.startswith("otahub.mqtt."):
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.Attribute):
            if (
                isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr not in PUBLIC
            ):
                found.append(f"{where}: mqtt.{node.attr} is not a public name")
            if node.attr in INTERNAL_ATTRIBUTES or (
                node.attr in CLIENT_INTERNALS and module.startswith(CLIENT_CODE)
            ):
                found.append(f"{where}: reads the endpoint's internal .{node.attr}")
    return found


def hub_modules() -> list[Path]:
    return sorted(HUB.rglob("*.py"))


def test_the_hub_uses_only_the_public_names_of_otahub_mqtt() -> None:
    found = [
        problem
        for path in hub_modules()
        for problem in violations(path.read_text(), path.relative_to(HUB).as_posix())
    ]
    assert found == []


def test_drivers_are_given_the_endpoint_through_its_interface() -> None:
    """Every module that hooks into the endpoint imports the interface, not the server."""
    users = {
        path.relative_to(HUB).as_posix()
        for path in hub_modules()
        if "from otahub.mqtt import" in path.read_text()
    }
    assert {"drivers/base.py", "transport.py", "device_auth/install.py"} <= users
    base = (HUB / "drivers" / "base.py").read_text()
    assert "mqtt: Endpoint" in base


def test_every_public_name_is_there() -> None:
    missing = [name for name in mqtt.__all__ if not hasattr(mqtt, name)]
    assert missing == []


@pytest.mark.parametrize(
    ("module", "source", "problem"),
    [
        (
            "drivers/x/driver.py",
            "from otahub.mqtt.session import Session\n",
            "drivers/x/driver.py:1: imports the endpoint's module otahub.mqtt.session",
        ),
        (
            "drivers/x/driver.py",
            "import otahub.mqtt.server\n",
            "drivers/x/driver.py:1: import otahub.mqtt.server",
        ),
        (
            "drivers/x/driver.py",
            "from otahub.mqtt import Session\n",
            "drivers/x/driver.py:1: Session is not a public name",
        ),
        (
            "drivers/x/driver.py",
            "from otahub.mqtt import MQTTServer\n",
            "drivers/x/driver.py:1: MQTTServer outside the endpoint's wiring",
        ),
        (
            "startup_log.py",
            "from otahub import mqtt\nmqtt.server\n",
            "startup_log.py:2: mqtt.server is not a public name",
        ),
        (
            "drivers/x/attributes.py",
            "def f(session):\n    return session.subscriptions.items()\n",
            "drivers/x/attributes.py:2: reads the endpoint's internal .subscriptions",
        ),
        (
            "device_auth/install.py",
            "def f(session):\n    session.connection.close()\n",
            "device_auth/install.py:2: reads the endpoint's internal .connection",
        ),
    ],
)
def test_each_way_past_the_public_names_is_caught(module: str, source: str, problem: str) -> None:
    assert problem in violations(source, module)


def test_the_wiring_may_build_the_server() -> None:
    source = "from otahub.mqtt import LogStore, MQTTServer, ServerConfig\n"
    assert violations(source, "app.py") == []
