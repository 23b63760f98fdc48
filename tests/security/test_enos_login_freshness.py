"""A captured EnOS login replayed later is refused; the device's fresh one is not."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from otahub.protocols import enos
from tests.hubproc import HubProcess
from tests.interop.paho_client import V311, PahoClient

PK, DK, SECRET = "pk-fresh", "dk-fresh", "secret-fresh"
BAD_USER_NAME_OR_PASSWORD = 0x86  # paho reports 3.1.1's return code 4 as 0x86


def connect(hub: HubProcess, timestamp_ms: int) -> int:
    login = enos.build_login(PK, DK, SECRET, timestamp=str(timestamp_ms))
    client = PahoClient(
        hub.mqtt_port, login.client_id, V311, username=login.username, password=login.password
    )
    code: int = client.connect()
    client.disconnect()
    return code


def test_replayed_enos_login_from_two_years_ago_is_refused(
    hub_factory: Callable[..., HubProcess],
) -> None:
    hub = hub_factory("--no-auth")
    body = {"name": "enos-fresh", "dialect": "enos", "product_key": PK, "device_key": DK}
    response = httpx.post(f"{hub.http_url}/api/v1/devices", json={**body, "secret": SECRET})
    assert response.status_code == 201, response.text
    year_ago = int((time.time() - 2 * 365.25 * 86400) * 1000)
    assert connect(hub, year_ago) == BAD_USER_NAME_OR_PASSWORD
    assert f"stale EnOS login of deviceKey {DK!r}: timestamp {year_ago} is 2.0 years" in (hub.log())
    assert connect(hub, int(time.time() * 1000)) == 0
