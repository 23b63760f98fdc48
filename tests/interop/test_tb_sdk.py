"""ThingsBoard's public device SDK (tb-mqtt-client 1.13.14) updates from ``otahub serve``.

The SDK runs its own firmware flow unchanged: it subscribes to the filter
``v2/fw/response/+`` (refused; chunks still arrive by direct delivery),
reports ``IDLE``, requests the shared attributes, downloads the image
chunk by chunk, verifies the checksum and reports up to ``UPDATED``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import mmh3
import pytest

from tests.hubproc import HubProcess
from tests.interop.paho_client import V5, PahoClient
from tests.interop.tbhub import TbHub

tb_device_mqtt = pytest.importorskip("tb_device_mqtt")
sdk_utils = pytest.importorskip("sdk_utils")

pytestmark = [pytest.mark.interop, pytest.mark.slow]

IMAGE_SIZE = 150_000  # more than two 65536-byte chunks


@pytest.fixture(scope="module")
def tb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TbHub]:
    hub = HubProcess(data_dir=tmp_path_factory.mktemp("tb-sdk") / "data", extra_args=["--no-auth"])
    hub.start()
    client = TbHub(hub)
    try:
        yield client
    finally:
        client.close()
        hub.stop()
        assert "Traceback" not in hub.log()


def _hub_checksum(algorithm: str, data: bytes) -> str:
    # The reference encodings of the protocol doc, section 9.
    if algorithm == "SHA256":
        return hashlib.sha256(data).hexdigest()
    if algorithm == "MD5":
        return hashlib.md5(data).hexdigest()
    if algorithm == "CRC32":
        return (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little").hex()
    if algorithm == "MURMUR3_32":
        return int(mmh3.hash(data, signed=False)).to_bytes(4, "little").hex()
    return bytes(mmh3.hash_bytes(data)).hex()


def image_for(algorithm: str, seed: int) -> bytes:
    """Random bytes the SDK can verify: its CRC32/MURMUR3 check fails on a 0x00 high byte."""
    data = bytearray(os.urandom(IMAGE_SIZE))
    while not sdk_utils.verify_checksum(
        bytes(data), algorithm, _hub_checksum(algorithm, bytes(data))
    ):
        data[seed % IMAGE_SIZE] ^= 0xFF
        seed += 1
    return bytes(data)


def image_failing_for(algorithm: str) -> bytes:
    """Random bytes whose correct checksum the SDK rejects (its CRC32 check drops a 0x00 byte)."""
    while True:
        data = os.urandom(IMAGE_SIZE)
        if not sdk_utils.verify_checksum(data, algorithm, _hub_checksum(algorithm, data)):
            return data


class SdkDevice:
    """One TBDeviceMqttClient whose install step reports UPDATED like a real device would."""

    def __init__(self, port: int, token: str, chunk_size: int) -> None:
        self.client = tb_device_mqtt.TBDeviceMqttClient(
            "127.0.0.1", port=port, username=token, chunk_size=chunk_size
        )
        self.received: bytes | None = None
        self.algorithm: str | None = None  # the fw_checksum_algorithm it verified with
        self.installed: list[str] = []
        self.done = threading.Event()
        self.downloaded = threading.Event()  # set on each DOWNLOADED the SDK reports
        self.client.set_on_firmware_received_callback(self._install)
        report = self.client.update_firmware_info

        def reporting(*args: Any, **kwargs: Any) -> None:
            if kwargs.get("state") is tb_device_mqtt.TBFirmwareState.DOWNLOADED:
                self.downloaded.set()
            report(*args, **kwargs)

        self.client.update_firmware_info = reporting

    def _install(self, client: Any, data: bytes, version: str) -> None:
        self.received = data
        self.installed.append(version)
        state = tb_device_mqtt.TBFirmwareState
        client.update_firmware_info(state=state.UPDATING)
        info = client.firmware_info
        self.algorithm = info.get("fw_checksum_algorithm")
        client.update_firmware_info(
            title=info["fw_title"], version=info["fw_version"], state=state.UPDATED
        )
        self.done.set()

    def run(self) -> None:
        self.client.connect()
        self.client.get_firmware_update()

    def stop(self) -> None:
        self.client.stop()
        self.client.disconnect()


def _update_with_sdk(
    tb: TbHub, name: str, algorithm: str, chunk_size: int, image: bytes
) -> tuple[dict[str, Any], SdkDevice]:
    tb.upload(name, "2.0.0", image)
    tb.add_device(name, f"token-{name}")
    tb.settings(name, checksum_algorithm=algorithm)
    update_id = tb.start_update(name, name, "2.0.0")
    device = SdkDevice(tb.mqtt_port, f"token-{name}", chunk_size)
    device.run()
    try:
        update = tb.wait_update(update_id, ("succeeded", "failed", "canceled"), timeout=40)
    finally:
        device.stop()
    return update, device


def _check(update: dict[str, Any], device: SdkDevice, image: bytes) -> None:
    assert update["state"] == "succeeded", update
    assert device.received == image
    states = [t["to_state"] for t in update["transitions"]]
    assert states == [
        "pending",
        "sent",
        "downloading",
        "downloaded",
        "verified",
        "installing",
        "succeeded",
    ]


@pytest.mark.parametrize("algorithm", ["SHA256", "MD5", "CRC32", "MURMUR3_32", "MURMUR3_128"])
def test_sdk_updates_with_each_checksum(tb: TbHub, algorithm: str) -> None:
    name = f"sdk-{algorithm.lower().replace('_', '-')}"
    image = image_for(algorithm, seed=len(name))
    update, device = _update_with_sdk(tb, name, algorithm, 4096, image)
    _check(update, device, image)
    reported = tb.device(name)
    assert reported["firmware"] == {"title": name, "version": "2.0.0"}


def test_sdk_verifies_with_the_package_checksum_algorithm_unless_the_device_overrides_it(
    tb: TbHub,
) -> None:
    title = "sdk-package-algorithm"
    image = image_for("MURMUR3_128", seed=7)
    while not sdk_utils.verify_checksum(image, "CRC32", _hub_checksum("CRC32", image)):
        image = image_for("MURMUR3_128", seed=len(image) + image[0])
    package = tb.upload(title, "2.0.0", image, checksum_algorithm="murmur3_128")
    assert package["checksum_algorithm"] == "MURMUR3_128"
    results = {}
    for name, override in (("sdk-pkg-alg", None), ("sdk-dev-alg", "CRC32")):
        tb.add_device(name, f"token-{name}")
        if override is not None:
            tb.settings(name, checksum_algorithm=override)
        update_id = tb.start_update(name, title, "2.0.0")
        device = SdkDevice(tb.mqtt_port, f"token-{name}", 4096)
        device.run()
        try:
            update = tb.wait_update(update_id, ("succeeded", "failed", "canceled"), timeout=40)
        finally:
            device.stop()
        _check(update, device, image)
        results[name] = device.algorithm
    # the package's own algorithm; the device's setting wins where it has one
    assert results == {"sdk-pkg-alg": "MURMUR3_128", "sdk-dev-alg": "CRC32"}


@pytest.mark.parametrize("chunk_size", [0, 4096, 65536])
def test_sdk_updates_with_each_chunk_size(tb: TbHub, chunk_size: int) -> None:
    name = f"sdk-chunks-{chunk_size}"
    image = image_for("SHA256", seed=chunk_size)
    update, device = _update_with_sdk(tb, name, "SHA256", chunk_size, image)
    _check(update, device, image)


def test_sdk_gets_session_limits(tb: TbHub) -> None:
    tb.add_device("sdk-limits", "token-limits")
    client = tb_device_mqtt.TBDeviceMqttClient(
        "127.0.0.1", port=tb.mqtt_port, username="token-limits"
    )
    got = threading.Event()
    answer: dict[str, Any] = {}

    def on_limits(request_id: int, response: Any, *_: Any) -> None:
        answer.update(response)
        got.set()

    client.connect()
    try:
        callback: Callable[..., None] = on_limits
        client.request_service_configuration(callback)
        assert got.wait(10)
    finally:
        client.stop()
        client.disconnect()
    assert answer["maxPayloadSize"] == 65536
    assert set(answer["rateLimits"]) == {"messages", "telemetryMessages", "telemetryDataPoints"}


def _wait_device(
    tb: TbHub, name: str, ready: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        device = tb.device(name)
        if ready(device):
            return device
        assert time.monotonic() < deadline, f"device {name} never got there: {device}"
        time.sleep(0.05)


def test_second_connection_with_the_same_token_does_not_cut_off_the_first(tb: TbHub) -> None:
    name = "sdk-twice"
    image = image_for("SHA256", seed=7)
    tb.upload(name, "2.0.0", image)
    tb.add_device(name, f"token-{name}")
    device = SdkDevice(tb.mqtt_port, f"token-{name}", 65536)
    device.run()
    try:
        # online, and its telemetry in: from here only sessions move last_seen
        first = _wait_device(tb, name, lambda d: d["online"] and d["firmware"]["version"] == "v0")
        # the same token from a second client, which connects and goes away again
        second = PahoClient(tb.mqtt_port, f"{name}-second", V5, username=f"token-{name}")
        assert second.connect() == 0
        joined = _wait_device(tb, name, lambda d: d["last_seen_at"] != first["last_seen_at"])
        second.disconnect()
        left = _wait_device(tb, name, lambda d: d["last_seen_at"] != joined["last_seen_at"])
        assert left["online"] is True  # the first session is still there
        # and the hub still delivers to it: the update goes through
        update_id = tb.start_update(name, name, "2.0.0")
        update = tb.wait_update(update_id, ("succeeded", "failed", "canceled"), timeout=40)
        assert update["state"] == "succeeded", update
        assert device.received == image
    finally:
        device.stop()
    _wait_device(tb, name, lambda d: not d["online"])


def test_failed_update_then_reassignment_delivers_only_the_new_package(tb: TbHub) -> None:
    # The SDK answers a checksum failure by fetching the package again and again;
    # its FAILED for the old package must not end the update that replaces it.
    name = "sdk-reassign"
    tb.upload(name, "2.0.0", image_failing_for("CRC32"))
    good = image_for("CRC32", seed=11)
    tb.upload(name, "3.0.0", good)
    tb.add_device(name, f"token-{name}")
    tb.settings(name, checksum_algorithm="CRC32")
    failing = tb.start_update(name, name, "2.0.0")
    device = SdkDevice(tb.mqtt_port, f"token-{name}", 65536)
    device.run()
    try:
        failed = tb.wait_update(failing, ("succeeded", "failed", "canceled"), timeout=40)
        assert (failed["state"], failed["code"]) == ("failed", "FAILED"), failed
        # reassigned while the SDK verifies its next copy of the old package
        device.downloaded.clear()
        assert device.downloaded.wait(20)
        replacing = tb.start_update(name, name, "3.0.0")
        update = tb.wait_update(replacing, ("succeeded", "failed", "canceled"), timeout=60)
    finally:
        device.stop()
    assert update["state"] == "succeeded", update
    assert "failed" not in [t["to_state"] for t in update["transitions"]]
    assert device.installed == ["3.0.0"]
    assert device.received == good
