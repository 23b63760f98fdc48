"""The public EnOS device SDK (enos-mqtt-sdk-python 0.1.1) updates from ``otahub serve``.

The SDK is used as a device vendor would: an upgrade handler registered before
``connect()``, synchronous ``publish()`` of inform/progress/getversion. The
SDK never downloads; the handlers here download ``fileUrl`` and check its MD5.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from enos.core.internal.MqttConnection import MqttConnection
from enos.core.MqttClient import MqttClient
from enos.message.downstream.ota.OtaUpgradeCommand import OtaUpgradeCommand
from enos.message.upstream.ota.OtaGetVersionRequest import OtaGetVersionRequest
from enos.message.upstream.ota.OtaProgressReportRequest import (
    OtaProgressReportRequest,
)
from enos.message.upstream.ota.OtaVersionReportRequest import (
    OtaVersionReportRequest,
)

from tests.interop.enos_hub import EnosHub, hub_fixture

pytestmark = [pytest.mark.interop, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PK = "prodSDK1"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnosHub]:
    yield from hub_fixture(tmp_path_factory)


class Device:
    """One SDK client with the sample's helpers; remembers what its handler saw."""

    def __init__(self, hub: EnosHub, name: str, secret: str | None = None) -> None:
        self.hub = hub
        self.name = name
        self.dk = f"dk-{name}"
        self.secret = secrets.token_hex(8)
        hub.add_device(name, PK, self.dk, self.secret, cli=True)
        self.client = MqttClient(
            f"tcp://127.0.0.1:{hub.mqtt_port}", PK, self.dk, secret or self.secret
        )
        self.errors: queue.Queue[BaseException] = queue.Queue()
        self.done = threading.Event()
        self.commands: list[Any] = []

    def on_upgrade(self, handler: Callable[[Any], Any]) -> None:
        """Register before connect(), as the SDK requires; exceptions are kept for the test."""

        def run(command: Any, path_list: Any) -> Any:
            self.commands.append(command)
            try:
                return handler(command)
            except BaseException as exc:
                self.errors.put(exc)
                raise
            finally:
                self.done.set()

        self.client.register_arrived_message_handler(OtaUpgradeCommand.get_class(), run)

    def publish(self, builder: Any) -> Any:
        request = builder.set_product_key(PK).set_device_key(self.dk).build()
        return self.client.publish(request)

    def inform(self, version: str) -> Any:
        return self.publish(OtaVersionReportRequest.builder().set_version(version))

    def progress(self, step: str, desc: str) -> Any:
        return self.publish(OtaProgressReportRequest.builder().set_step(step).set_desc(desc))

    def getversion(self) -> Any:
        return self.publish(OtaGetVersionRequest.builder())

    def close(self) -> None:
        # The SDK's close() leaves paho's network thread retrying; stop it first.
        paho = self.client._MqttClient__connection._MqttConnection__paho_client  # type: ignore[attr-defined]
        if paho is not None:
            paho.disconnect()
            paho.loop_stop()
        self.client.close()

    def check_no_errors(self) -> None:
        if not self.errors.empty():
            raise self.errors.get()


@pytest.fixture
def devices() -> Iterator[list[Device]]:
    made: list[Device] = []
    yield made
    for device in made:
        device.close()


def download(url: str, md5: str, size: int) -> bytes:
    """What a device does with fileUrl: fetch it (second half by Range) and check the MD5."""
    assert url.startswith("http://127.0.0.1:")
    with httpx.Client(timeout=10) as http:
        head = http.get(url, headers={"Range": f"bytes=0-{size // 2 - 1}"})
        assert head.status_code == 206
        rest = http.get(url, headers={"Range": f"bytes={size // 2}-"})
        assert rest.status_code == 206
    body = head.content + rest.content
    assert len(body) == size
    assert hashlib.md5(body).hexdigest() == md5
    return body


def upgrade_handler(device: Device, steps: list[str]) -> Callable[[Any], None]:
    """The SDK sample's handler, with the download the sample leaves as a TODO."""

    def handle(command: Any) -> None:
        firmware = command.get_firmware_info()
        download(firmware.file_url, firmware.sign, firmware.file_size)
        for step in steps:
            assert device.progress(step, f"step {step}").get_code() == 200
        if not steps or int(steps[-1]) >= 0:
            assert device.inform(firmware.version).get_code() == 200

    return handle


def test_pushed_upgrade_succeeds(hub: EnosHub, devices: list[Device]) -> None:
    content = secrets.token_bytes(300_000)
    md5 = hub.upload("sdk-fw", "2.0", content, cli=True)
    device = Device(hub, "sdk-push")
    devices.append(device)
    device.on_upgrade(upgrade_handler(device, ["10", "50", "100"]))
    device.client.connect()
    assert device.client.is_connected()
    reply = device.inform("1.0")
    assert reply.get_code() == 200
    assert hub.device("sdk-push")["firmware"]["version"] == "1.0"

    update_id = hub.start_update("sdk-push", "sdk-fw", "2.0", cli=True)
    update = hub.wait_update(update_id, ("succeeded", "failed"))
    assert device.done.wait(10)
    device.check_no_errors()
    assert update["state"] == "succeeded", update
    assert hub.path(update) == ["pending", "sent", "downloading", "installing", "succeeded"]
    assert [t["progress"] for t in update["transitions"][2:4]] == [10, 100]
    assert all(t["source"] == "enos" for t in update["transitions"][1:])
    assert hub.device("sdk-push")["firmware"]["version"] == "2.0"

    (command,) = device.commands
    firmware = command.get_firmware_info()
    assert firmware.version == "2.0"
    assert firmware.sign == md5
    assert firmware.sign_method == "md5"
    assert firmware.file_size == len(content)
    assert isinstance(firmware.file_size, int)
    # the download link dies with the update
    assert httpx.get(firmware.file_url, timeout=10).status_code == 404


def test_on_request_upgrade_through_getversion(hub: EnosHub, devices: list[Device]) -> None:
    content = secrets.token_bytes(50_000)
    md5 = hub.upload("sdk-fw", "3.0", content, cli=True)
    device = Device(hub, "sdk-request")
    devices.append(device)
    device.on_upgrade(lambda command: None)  # nothing may be pushed in this mode
    device.client.connect()
    assert device.inform("1.0").get_code() == 200
    update_id = hub.start_update("sdk-request", "sdk-fw", "3.0", mode="on-request", cli=True)

    response = device.getversion()
    assert response.get_code() == 200
    # 0.1.1's response class has no decoder: the entries are plain dicts
    (offer,) = response.get_data()
    assert offer["version"] == "3.0"
    assert offer["sign"] == md5
    assert offer["signMethod"] == "md5"
    assert offer["fileSize"] == len(content)
    download(offer["fileUrl"], offer["sign"], offer["fileSize"])
    assert hub.update(update_id)["state"] == "sent"
    for step in ("10", "50", "100"):
        assert device.progress(step, f"step {step}").get_code() == 200
    assert device.inform(offer["version"]).get_code() == 200

    update = hub.wait_update(update_id, ("succeeded", "failed"))
    assert update["state"] == "succeeded"
    assert hub.path(update) == ["pending", "sent", "downloading", "installing", "succeeded"]
    assert device.commands == []
    # nothing left to offer
    assert device.getversion().get_data() == []


def test_negative_step_fails_the_update(hub: EnosHub, devices: list[Device]) -> None:
    hub.upload("sdk-fw", "4.0", secrets.token_bytes(10_000), cli=True)
    device = Device(hub, "sdk-fail")
    devices.append(device)
    device.on_upgrade(upgrade_handler(device, ["10", "-2"]))
    device.client.connect()
    assert device.inform("1.0").get_code() == 200
    update_id = hub.start_update("sdk-fail", "sdk-fw", "4.0", cli=True)

    update = hub.wait_update(update_id, ("succeeded", "failed"))
    assert device.done.wait(10)
    device.check_no_errors()
    assert update["state"] == "failed"
    assert update["code"] == "-2"
    assert update["reason"] == "download failure: step -2"
    assert hub.path(update) == ["pending", "sent", "downloading", "failed"]
    # progress after the end: there is no task any more
    assert device.progress("50", "late").get_code() == 764


def test_wrong_secret_is_refused(
    hub: EnosHub,
    devices: list[Device],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # connect() waits this long for a CONNACK that never says yes
    monkeypatch.setattr(MqttConnection, "_MqttConnection__connect_timeout", 2)
    device = Device(hub, "sdk-wrong", secret="not-the-secret")
    devices.append(device)
    with caplog.at_level(logging.WARNING, logger="enos"):
        device.client.connect()
    assert not device.client.is_connected()
    # paho hands the SDK the CONNACK return code: 4, bad user name or password
    assert any("error code: 4" in r.getMessage() for r in caplog.records), caplog.text
    assert "wrong sign for EnOS device 'sdk-wrong'" in hub.proc.log()
