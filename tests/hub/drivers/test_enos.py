"""The EnOS driver in ``otahub serve``, driven by paho clients speaking EnOS on the wire.

One hub serves the whole module; every test uses its own devices. Payloads are
written out as bytes, the way the SDKs and the seed put them on the wire.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from otahub.mqtt.codec import encode
from otahub.mqtt.packets import Disconnect, Publish
from otahub.protocols import enos
from tests.interop.enos_hub import EnosHub, hub_fixture
from tests.interop.paho_client import PahoClient
from tests.mqtt.rawclient import RawClient

PK = "prodDrv"
# paho 2 reports the 3.1.1 CONNACK return codes 4 and 5 as the equivalent 5.0 reason codes
BAD_USER_NAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
GRACE = 0.3  # what hub_fixture sets


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnosHub]:
    yield from hub_fixture(tmp_path_factory)


class Device:
    """An EnOS device on a plain paho client; it never subscribes (the hub delivers directly)."""

    def __init__(self, hub: EnosHub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.dk = f"dk-{name}"
        self.secret = secrets.token_hex(8)
        hub.add_device(name, PK, self.dk, self.secret)
        self.client: PahoClient | None = None
        self._ids = 0

    def topic(self, kind: str, dk: str | None = None) -> str:
        return f"/sys/{PK}/{dk or self.dk}/ota/device/{kind}"

    def connect(self, **login: Any) -> Any:
        creds = enos.build_login(
            PK,
            self.dk,
            login.pop("secret", self.secret),
            timestamp=str(int(time.time() * 1000)),
            **login,
        )
        self.client = PahoClient(
            self.hub.mqtt_port, creds.client_id, username=creds.username, password=creds.password
        )
        return self.client.connect()

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client = None

    def send(self, kind: str, payload: bytes | str, dk: str | None = None) -> None:
        assert self.client is not None
        self.client.publish(self.topic(kind, dk), payload, qos=1)

    def request(self, kind: str, params: dict[str, Any], method: str | None = None) -> str:
        self._ids += 1
        request_id = str(self._ids)
        body = {
            "id": request_id,
            "version": "1.0",
            "method": method or f"ota.device.{kind}",
            "params": params,
        }
        self.send(kind, json.dumps(body))
        return request_id

    def expect(self, topic: str, timeout: float = 5.0) -> dict[str, Any]:
        assert self.client is not None
        message = self.client.expect(timeout)
        assert message.topic == topic, (message.topic, message.payload)
        body: dict[str, Any] = json.loads(message.payload)
        return body

    def call(self, kind: str, params: dict[str, Any], method: str | None = None) -> dict[str, Any]:
        request_id = self.request(kind, params, method)
        reply = self.expect(self.topic(kind) + "_reply")
        assert reply["id"] == request_id
        assert isinstance(reply["code"], int)
        return reply

    def inform(self, version: str) -> dict[str, Any]:
        return self.call("inform", {"version": version})

    def progress(self, step: str, desc: str = "") -> dict[str, Any]:
        return self.call("progress", {"step": step, "desc": desc})

    def expect_upgrade(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.expect(self.topic("upgrade"), timeout)


@pytest.fixture
def make(hub: EnosHub) -> Iterator[Any]:
    made: list[Device] = []

    def factory(name: str) -> Device:
        device = Device(hub, name)
        made.append(device)
        return device

    yield factory
    for device in made:
        device.disconnect()


# -- login ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login", "case"),
    [
        pytest.param({}, "upper", id="documented-sha256-upper"),
        pytest.param({"uppercase": False}, "lower", id="sha256-lower"),
        pytest.param({"sign_method": enos.SignMethod.SHA1}, "upper", id="sha1"),
        pytest.param({"sign_method": enos.SignMethod.MD5, "uppercase": False}, "lower", id="md5"),
    ],
)
def test_login_variants_are_accepted(make: Any, login: dict[str, Any], case: str) -> None:
    device = make(f"login-{secrets.token_hex(3)}")
    assert device.connect(**login) == 0


def _raw_connect(hub: EnosHub, client_id: str, username: str, password: str) -> Any:
    client = PahoClient(hub.mqtt_port, client_id, username=username, password=password)
    try:
        return client.connect()
    finally:
        client.disconnect()


def _signed_connect(
    hub: EnosHub, device: Device, head: str, timestamp: str, *, method: str = "sha256"
) -> Any:
    """CONNECT with a correct sign over ``head`` and ``timestamp``, as the SDKs build it."""
    params = {"deviceKey": device.dk, "productKey": PK, "clientId": head, "timestamp": timestamp}
    sign = enos.sign(params, device.secret, enos.parse_sign_method(method))
    cid = f"{head}|securemode=2, signmethod={method}, timestamp={timestamp}|"
    return _raw_connect(hub, cid, f"{device.dk}&{PK}", sign.upper())


def test_sdk_shaped_logins(hub: EnosHub, make: Any) -> None:
    device = make("login-shapes")
    # Python SDK: hmacsha256 alias, float timestamp, lowercase plain SHA-256
    ts = f"{time.time() * 1000:.2f}"
    params = {"deviceKey": device.dk, "productKey": PK}
    sign = enos.sign(
        {**params, "clientId": device.dk, "timestamp": ts}, device.secret, enos.SignMethod.SHA256
    )
    cid = f"{device.dk}|securemode=2,signmethod=hmacsha256,timestamp={ts}|"
    assert _raw_connect(hub, cid, f"{device.dk}&{PK}", sign) == 0
    # Java SDK: {…} extras before the first | are signed verbatim
    head = device.dk + "{ip=10.0.0.1,version=2.3}"
    assert _signed_connect(hub, device, head, str(int(time.time() * 1000))) == 0
    # C SDK: pk.dk client id, upper-case hex; spaces after commas (its constant
    # year-2050 timestamp needs --enos-login-window 0, below)
    assert _signed_connect(hub, device, f"{PK}.{device.dk}", str(int(time.time() * 1000))) == 0


@pytest.mark.parametrize(
    ("offset_s", "said"),
    [
        pytest.param(-3 * 365 * 86400.0, "behind", id="captured-years-ago"),
        pytest.param(-16 * 60.0, "behind", id="just-past-the-window"),
        pytest.param(16 * 60.0, "ahead of", id="from-the-future"),
    ],
)
def test_correctly_signed_login_with_a_stale_timestamp_is_refused(
    hub: EnosHub, make: Any, offset_s: float, said: str
) -> None:
    """A captured CONNECT replays with a valid sign; its timestamp gives it away (CONNACK 4)."""
    device = make(f"stale-{secrets.token_hex(3)}")
    stamp = str(int((time.time() + offset_s) * 1000))
    assert _signed_connect(hub, device, device.dk, stamp) == BAD_USER_NAME_OR_PASSWORD
    line = f"stale EnOS login of deviceKey {device.dk!r}: timestamp {stamp} is"
    assert next(entry for entry in hub.proc.log().splitlines() if line in entry).endswith(
        "[reason 0x86]"
    )
    assert f"{said} the hub's clock (window 900 s)" in hub.proc.log()
    # the same device with a fresh login is still welcome
    assert _signed_connect(hub, device, device.dk, str(int(time.time() * 1000))) == 0


def test_reconnect_with_the_last_login_s_timestamp_is_accepted_past_the_window(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The Python SDK signs once per process and its reconnects repeat that login.

    Such a reconnect is accepted however old its timestamp, also after a hub
    restart; a timestamp the device is not using any more is refused.
    """
    gen = hub_fixture(tmp_path_factory, "--enos-login-window", "2")
    hub = next(gen)
    try:
        device = Device(hub, f"sdk-{secrets.token_hex(3)}")
        older = str(int(time.time() * 1000) - 1000)
        assert _signed_connect(hub, device, device.dk, older) == 0
        stamp = str(int(time.time() * 1000))
        assert _signed_connect(hub, device, device.dk, stamp) == 0
        time.sleep(3)  # both timestamps are now outside the window
        assert _signed_connect(hub, device, device.dk, stamp) == 0
        assert _signed_connect(hub, device, device.dk, older) == BAD_USER_NAME_OR_PASSWORD
        assert f"stale EnOS login of deviceKey {device.dk!r}: timestamp {older} is" in (
            hub.proc.log()
        )
        hub.proc.stop()
        hub.proc.start()
        assert _signed_connect(hub, device, device.dk, stamp) == 0
        assert f"logs in again with the timestamp of its last login ({stamp}" in hub.proc.log()
    finally:
        gen.close()


def test_login_without_a_numeric_timestamp_is_refused(hub: EnosHub, make: Any) -> None:
    device = make("stale-nonnumeric")
    assert _signed_connect(hub, device, device.dk, "yesterday") == BAD_USER_NAME_OR_PASSWORD
    assert f"EnOS login of deviceKey {device.dk!r} has no timestamp in milliseconds" in (
        hub.proc.log()
    )


@pytest.fixture(scope="module")
def windowless_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnosHub]:
    yield from hub_fixture(tmp_path_factory, "--enos-login-window", "0")


def test_login_window_zero_accepts_the_c_sdks_constant_timestamp(
    hub: EnosHub, windowless_hub: EnosHub
) -> None:
    """The C SDK always signs 2524608000000 (2050): refused by default, fine with the check off."""
    for target, expected in ((hub, BAD_USER_NAME_OR_PASSWORD), (windowless_hub, 0)):
        device = Device(target, f"c-sdk-{secrets.token_hex(3)}")
        assert _signed_connect(target, device, f"{PK}.{device.dk}", "2524608000000") == expected


def test_refused_logins(hub: EnosHub, make: Any) -> None:
    device = make("login-refused")
    assert device.connect(secret="wrong") == BAD_USER_NAME_OR_PASSWORD
    device.client = None
    now = str(int(time.time() * 1000))
    unknown = enos.build_login(PK, "no-such-dk", "x", timestamp=now)
    assert (
        _raw_connect(hub, unknown.client_id, unknown.username, unknown.password)
        == BAD_USER_NAME_OR_PASSWORD
    )
    bad = f"{device.dk}|securemode=2,signmethod=sha512,timestamp={now}|"
    assert _raw_connect(hub, bad, f"{device.dk}&{PK}", "00") == BAD_USER_NAME_OR_PASSWORD
    dynamic = enos.build_login(
        PK, device.dk, "x", timestamp=now, secure_mode=enos.SecureMode.DYNAMIC_ACTIVATION
    )
    assert (
        _raw_connect(hub, dynamic.client_id, dynamic.username, dynamic.password) == NOT_AUTHORIZED
    )
    log = hub.proc.log()
    assert "wrong sign for EnOS device 'login-refused'" in log
    assert "no EnOS device with productKey" in log
    assert "unknown sign method 'sha512'" in log
    assert "needs a product secret" in log


# -- cross-device access ---------------------------------------------------------


def test_device_may_not_use_another_devices_topics(hub: EnosHub, make: Any) -> None:
    a, b = make("cross-a"), make("cross-b")
    assert a.connect() == 0 and b.connect() == 0
    assert b.inform("1.0")["code"] == 200

    body = json.dumps(
        {"id": "7", "version": "1.0", "method": "ota.device.inform", "params": {"version": "6.6.6"}}
    )
    a.send("inform", body, dk=b.dk)
    reply = a.expect(a.topic("inform", dk=b.dk) + "_reply")
    assert reply["id"] == "7"
    assert reply["code"] == enos.EnosCode.NO_WRITE_PERMISSION
    assert "no write permission" in reply["message"]
    a.send("progress", json.dumps({"id": "8", "params": {"step": "-1"}}), dk=b.dk)
    assert a.expect(a.topic("progress", dk=b.dk) + "_reply")["code"] == 1009
    assert b.client is not None
    b.client.expect_none(0.3)  # nothing reaches B
    assert hub.device("cross-b")["firmware"]["version"] == "1.0"

    # subscriptions: own reply topics only
    assert a.client is not None
    assert a.client.subscribe(a.topic("inform_reply"), 1) == [1]
    (refused,) = a.client.subscribe(b.topic("upgrade"), 1)
    assert refused.is_failure
    (refused,) = a.client.subscribe("/sys/#", 1)
    assert refused.is_failure
    # the cloud's own topic is not the device's to write
    a.send("upgrade", json.dumps({"id": "9", "params": {}}))
    assert a.expect(a.topic("upgrade_reply"))["code"] == 1009
    # the Python SDK's /sys/None/None/…/upgrade_reply: acknowledged, ignored, still connected
    a.client.publish(
        "/sys/None/None/ota/device/upgrade_reply", b'{"id":"1","code":200,"data":""}', qos=1
    )
    # a topic outside the OTA API: acknowledged and dropped by the ACL
    a.client.publish(f"/sys/{PK}/{b.dk}/thing/measurepoint/post", b"{}", qos=1)
    assert a.inform("1.0")["code"] == 200
    assert "may not publish to" in hub.proc.log()


# -- pushes ----------------------------------------------------------------------


def test_offline_device_gets_the_push_on_reconnect(hub: EnosHub, make: Any) -> None:
    md5 = hub.upload("drv-fw", "5.0", b"five" * 1000)
    device = make("offline")
    assert device.connect() == 0
    assert device.inform("1.0")["code"] == 200
    device.disconnect()
    update_id = hub.start_update("offline", "drv-fw", "5.0")
    time.sleep(0.2)
    assert hub.update(update_id)["state"] == "pending"  # EnOS "To be Pushed"

    # reconnect without any inform: pushed after the grace period
    assert device.connect() == 0
    push = device.expect_upgrade(timeout=GRACE + 5)
    assert push["method"] == "ota.device.upgrade"
    assert push["id"] == str(update_id)
    params = push["params"]
    assert params["version"] == "5.0"
    assert params["sign"] == md5 and params["signMethod"] == "md5"
    assert params["fileSize"] == 4000 and isinstance(params["fileSize"], int)
    assert params["fileUrl"].startswith(hub.url + "/")
    assert hub.wait_update(update_id, ("sent",))["state"] == "sent"
    # no progress yet: the next connection gets it again, and only once
    device.disconnect()
    assert device.connect() == 0
    assert device.inform("1.0")["code"] == 200
    assert device.expect_upgrade()["id"] == str(update_id)
    assert device.client is not None
    device.client.expect_none(GRACE + 0.5)
    # once progress arrives, a reconnect pushes nothing
    assert device.progress("10")["code"] == 200
    device.disconnect()
    assert device.connect() == 0
    assert device.inform("1.0")["code"] == 200
    device.client.expect_none(GRACE + 0.5)
    update = hub.update(update_id)
    assert hub.path(update) == ["pending", "sent", "downloading"]


def test_push_waits_for_a_reported_version_unless_forced(hub: EnosHub, make: Any) -> None:
    hub.upload("drv-fw", "6.0", b"six" * 100)
    quiet = make("never-informed")
    assert quiet.connect() == 0
    update_id = hub.start_update("never-informed", "drv-fw", "6.0")
    assert quiet.client is not None
    quiet.client.expect_none(GRACE + 0.5)
    assert hub.update(update_id)["state"] == "pending"
    # its first inform qualifies it
    assert quiet.inform("1.0")["code"] == 200
    assert quiet.expect_upgrade()["params"]["version"] == "6.0"

    forced = make("forced")
    assert forced.connect() == 0
    update_id = hub.start_update("forced", "drv-fw", "6.0", force=True)
    assert forced.expect_upgrade(timeout=GRACE + 5)["id"] == str(update_id)


def test_a_batch_pushes_to_each_ready_device_and_leaves_the_others_waiting(
    hub: EnosHub, make: Any
) -> None:
    """``POST /updates/batch`` pushes a batch's EnOS updates together (claims, driver
    states and the move to ``sent`` at once), each as a single start would."""
    md5 = hub.upload("drv-batch", "8.0", b"eight" * 500)
    ready = [make(f"batch-ready-{n}") for n in range(3)]
    for device in ready:
        assert device.connect() == 0
        assert device.inform("1.0")["code"] == 200
    quiet = make("batch-quiet")  # connected, no version reported
    assert quiet.connect() == 0
    offline = make("batch-offline")
    assert offline.connect() == 0
    assert offline.inform("1.0")["code"] == 200
    offline.disconnect()
    time.sleep(GRACE + 0.2)  # the quiet device's link is ready: only its version is missing
    names = [d.name for d in (*ready, quiet, offline)]
    items = [{"device": name, "title": "drv-batch", "version": "8.0"} for name in names]
    r = httpx.post(f"{hub.url}/api/v1/updates/batch", json=items, timeout=10)
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["refused"]) == (len(names), 0), r.json()
    ids = {item["device"]: item["update"]["id"] for item in r.json()["items"]}

    for device in ready:
        push = device.expect_upgrade()
        assert push["id"] == str(ids[device.name])
        assert (push["params"]["version"], push["params"]["sign"]) == ("8.0", md5)
        # at once, as the SDKs do: the update must be sent by the time the push arrives
        assert device.progress("10")["code"] == 200
        assert device.client is not None
        device.client.expect_none(GRACE + 0.5)  # pushed once
        update = hub.wait_update(ids[device.name], ("downloading",))
        assert hub.path(update) == ["pending", "sent", "downloading"]
    assert quiet.client is not None
    quiet.client.expect_none(GRACE + 0.5)
    assert hub.update(ids[quiet.name])["state"] == "pending"
    assert hub.update(ids[offline.name])["state"] == "pending"
    # each waiting one goes out as a single start's would
    assert quiet.inform("1.0")["code"] == 200
    assert quiet.expect_upgrade()["id"] == str(ids[quiet.name])
    assert offline.connect() == 0
    assert offline.expect_upgrade(timeout=GRACE + 5)["id"] == str(ids[offline.name])


def test_fast_reports_are_applied_in_order(hub: EnosHub, make: Any) -> None:
    """fast_publish-style devices do not wait for replies: 100 must not overtake 10."""
    hub.upload("drv-fw", "7.0", b"seven")
    device = make("fast")
    assert device.connect() == 0
    assert device.inform("1.0")["code"] == 200
    update_id = hub.start_update("fast", "drv-fw", "7.0")
    device.expect_upgrade()
    for step in ("10", "20", "50", "80", "100"):
        device.request("progress", {"step": step, "desc": ""}, method="ota.progress")
    device.request("inform", {"version": "7.0"}, method="ota.inform")
    update = hub.wait_update(update_id, ("succeeded", "failed"))
    assert update["state"] == "succeeded"
    assert hub.path(update) == ["pending", "sent", "downloading", "installing", "succeeded"]


async def test_reports_sent_just_before_a_disconnect_are_applied(hub: EnosHub, make: Any) -> None:
    """The device's last words count even when the hub is still busy with earlier ones."""
    hub.upload("drv-fw", "7.1", b"seven-one")
    device = make("last-words")
    assert await asyncio.to_thread(device.connect) == 0
    assert (await asyncio.to_thread(device.inform, "1.0"))["code"] == 200
    update_id = hub.start_update("last-words", "drv-fw", "7.1")
    await asyncio.to_thread(device.expect_upgrade)
    await asyncio.to_thread(device.disconnect)

    creds = enos.build_login(PK, device.dk, device.secret, timestamp=str(int(time.time() * 1000)))
    client = await RawClient.open(hub.mqtt_port)
    connack = await client.connect(
        creds.client_id, username=creds.username, password=creds.password.encode()
    )
    assert connack.reason_code == 0

    def report(pid: int, kind: str, params: dict[str, str]) -> bytes:
        body = {"id": str(pid), "version": "1.0", "method": f"ota.device.{kind}", "params": params}
        return encode(Publish(device.topic(kind), json.dumps(body).encode(), 1, packet_id=pid), 4)

    # every report, then DISCONNECT, in one write: the connection ends while
    # the first report's database work still runs
    steps = [
        report(pid, "progress", {"step": step, "desc": ""})
        for pid, step in enumerate(("10", "50", "100"), start=1)
    ]
    await client.send_bytes(
        b"".join(steps) + report(4, "inform", {"version": "7.1"}) + encode(Disconnect(), 4)
    )
    client.close()
    update = await asyncio.to_thread(hub.wait_update, update_id, ("succeeded", "failed"))
    assert update["state"] == "succeeded"
    assert hub.path(update) == ["pending", "sent", "downloading", "installing", "succeeded"]


def test_a_second_login_replaces_the_first_connection(hub: EnosHub, make: Any) -> None:
    """One connection per device, as on EnOS: the newer login is the device's."""
    hub.upload("drv-fw", "7.2", b"seven-two")
    device = make("twice")
    assert device.connect() == 0
    assert device.inform("1.0")["code"] == 200
    first = device.client
    assert first is not None
    time.sleep(0.01)  # another timestamp, so another client id
    assert device.connect() == 0
    assert first.wait_disconnected(5), "the older connection was not closed"
    update_id = hub.start_update("twice", "drv-fw", "7.2")
    assert device.expect_upgrade()["id"] == str(update_id)
    assert device.progress("100")["code"] == 200
    assert device.inform("7.2")["code"] == 200
    assert hub.wait_update(update_id, ("succeeded", "failed"))["state"] == "succeeded"
    assert hub.device("twice")["online"] is True
    first.disconnect()


def test_inform_of_the_old_version_after_step_100_is_a_rollback(hub: EnosHub, make: Any) -> None:
    hub.upload("drv-fw", "8.0", b"eight")
    device = make("rollback")
    assert device.connect() == 0
    assert device.inform("1.0")["code"] == 200
    update_id = hub.start_update("rollback", "drv-fw", "8.0")
    device.expect_upgrade()
    assert device.progress("100")["code"] == 200
    assert device.inform("1.0")["code"] == 200
    update = hub.update(update_id)
    assert update["state"] == "failed"
    assert update["reason"].startswith("rolled back")


@pytest.mark.parametrize(
    ("step", "desc", "reason"),
    [
        ("-1", "", "upgrade failure"),
        ("-3", "md5 mismatch", "verification failure: md5 mismatch"),
        ("-4", "", "burning (flash write) failure"),
        ("-5", "user said no", "declined by device: user said no"),
        ("-17", "battery low", "battery low"),
    ],
)
def test_negative_steps(hub: EnosHub, make: Any, step: str, desc: str, reason: str) -> None:
    hub.upload("neg-fw", step, b"x")
    name = f"neg{step}"
    device = make(name)
    assert device.connect() == 0
    assert device.inform("1.0")["code"] == 200
    update_id = hub.start_update(name, "neg-fw", step)
    device.expect_upgrade()
    assert device.progress(step, desc)["code"] == 200
    update = hub.update(update_id)
    assert (update["state"], update["code"], update["reason"]) == ("failed", step, reason)


def test_upgrade_reply_with_an_error_fails_the_update(hub: EnosHub, make: Any) -> None:
    hub.upload("drv-fw", "9.0", b"nine")
    device = make("rejects")
    assert device.connect() == 0
    assert device.inform("1.0")["code"] == 200
    update_id = hub.start_update("rejects", "drv-fw", "9.0")
    push = device.expect_upgrade()
    # what the Python SDK sends without a handler: code as a string
    reply = {
        "id": push["id"],
        "code": "1101",
        "data": "",
        "message": "downstream command handler not registered",
    }
    device.send("upgrade_reply", json.dumps(reply))
    update = hub.wait_update(update_id, ("failed",))
    assert update["code"] == "1101"
    assert (
        update["reason"] == "device rejected the upgrade: downstream command handler not registered"
    )


def test_progress_without_a_task(hub: EnosHub, make: Any) -> None:
    hub.upload("drv-fw", "10.0", b"ten")
    device = make("no-task")
    assert device.connect() == 0
    reply = device.progress("10")
    assert (reply["code"], reply["message"]) == (764, "Device task not found")
    # an on-request update not offered yet has not started
    hub.start_update("no-task", "drv-fw", "10.0", mode="on-request")
    reply = device.progress("10")
    assert (reply["code"], reply["message"]) == (765, "Device task not start")
    # the Python SDK's method string for getversion, never answered 1260
    offer = device.call("getversion", {}, method="Ota.device.getversion")
    assert offer["code"] == 200
    assert [entry["version"] for entry in offer["data"]] == ["10.0"]
    assert device.progress("10")["code"] == 200


# -- downloads --------------------------------------------------------------------


def test_download_url(hub: EnosHub, make: Any) -> None:
    content = secrets.token_bytes(5000)
    hub.upload("drv-fw", "11.0", content)
    device = make("downloader")
    assert device.connect() == 0
    assert device.inform("1.0")["code"] == 200
    update_id = hub.start_update("downloader", "drv-fw", "11.0")
    url = device.expect_upgrade()["params"]["fileUrl"]
    with httpx.Client(timeout=10) as http:
        whole = http.get(url)
        assert whole.status_code == 200 and whole.content == content
        assert whole.headers["accept-ranges"] == "bytes"
        part = http.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == content[100:200]
        assert part.headers["content-range"] == "bytes 100-199/5000"
        assert http.head(url).headers["content-length"] == "5000"
        tampered = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
        assert http.get(tampered).status_code == 404
        assert http.get(url.replace(f"/{update_id}/", f"/{update_id + 1000}/")).status_code == 404


def test_forced_delete_of_an_updating_device_kills_its_download_url(
    hub: EnosHub, make: Any
) -> None:
    hub.upload("drv-del", "1.0", secrets.token_bytes(3000))
    device = make("deleted")
    assert device.connect() == 0
    assert device.inform("0.9")["code"] == 200
    update_id = hub.start_update("deleted", "drv-del", "1.0")
    url = device.expect_upgrade()["params"]["fileUrl"]
    with httpx.Client(timeout=10) as http:
        assert http.get(url).status_code == 200
        api = f"{hub.url}/api/v1"
        refused = http.delete(f"{api}/devices/deleted")
        assert refused.status_code == 409 and refused.json()["active_updates"] == [update_id]
        assert http.get(url).status_code == 200
        forced = http.delete(f"{api}/devices/deleted", params={"force": "true"})
        assert forced.status_code == 204, forced.text
        assert http.get(url).status_code == 404
        assert http.get(f"{api}/updates/{update_id}").json()["state"] == "canceled"


# -- malformed input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "payload", "code", "text", "echo"),
    [
        ("inform", b"", 1251, "empty", None),
        ("inform", b"{not json", 1220, "not valid JSON", None),
        ("inform", b"\xff\xfe", 1220, "not valid UTF-8", None),
        ("inform", b"[1, 2]", 1220, "must be a JSON object", None),
        ("inform", b'{"id":"3","params":[]}', 1220, "params must be an object", "3"),
        ("inform", b'{"id":"4","params":{}}', 1220, "inform version must be a string", "4"),
        ("inform", b'{"id":5,"params":{"version":5}}', 1220, "inform version must be a string", 5),
        ("progress", b'{"id":"6","params":{"desc":"x"}}', 1220, "progress lacks step", "6"),
        ("progress", b'{"id":"7","params":{"step":"abc"}}', 1220, "progress step must be", "7"),
        ("progress", b'{"id":"8","params":{"step":"101"}}', 1220, "at most 100", "8"),
        ("getversion", b'{"id":"9","params":"x"}', 1220, "params must be an object", "9"),
        ("inform", b'{"id":{"a":1},"params":{"version":"1"}}', 1220, "message id must be", None),
        ("inform", b"[" * 100_000, 1220, "", None),
    ],
)
def test_malformed_requests_get_an_error_reply(
    hub: EnosHub, make: Any, kind: str, payload: bytes, code: int, text: str, echo: Any
) -> None:
    device = make(f"bad-{secrets.token_hex(3)}")
    assert device.connect() == 0
    device.send(kind, payload)
    reply = device.expect(device.topic(kind) + "_reply")
    assert reply["code"] == code
    assert text in reply["message"]
    assert reply["message"]
    assert reply.get("id") == echo
    # the connection and the driver carry on
    assert device.inform("1.0")["code"] == 200


def test_reply_echoes_the_id_as_sent(hub: EnosHub, make: Any) -> None:
    device = make("ids")
    assert device.connect() == 0
    for raw in (b'"00042"', b"42", b"4.5"):
        device.send("inform", b'{"id":' + raw + b',"version":"1.0","params":{"version":"1.0"}}')
        assert device.client is not None
        message = device.client.expect()
        assert json.loads(message.payload)["id"] == json.loads(raw)
        assert b'"code":200' in message.payload
    assert "Traceback" not in hub.proc.log()


def test_http_broker_auth_and_download(hub: EnosHub, make: Any) -> None:
    """The enos-http-sdk path: POST /auth/{pk}/{dk}, then /multipart/…/file/download."""
    content = secrets.token_bytes(3000)
    hub.upload("drv-fw", "12.0", content)
    device, other = make("http-sdk"), make("http-other")
    assert device.connect() == 0
    assert device.inform("1.0")["code"] == 200
    hub.start_update("http-sdk", "drv-fw", "12.0")
    file_url = device.expect_upgrade()["params"]["fileUrl"]
    body = enos.build_http_auth_request(PK, device.dk, device.secret, sdk_version="2.3")
    with httpx.Client(base_url=hub.url, timeout=10) as http:
        auth = http.post(f"/auth/{PK}/{device.dk}", content=body)
        assert auth.status_code == 200
        assert auth.json()["code"] == 200
        session_id = auth.json()["data"]["sessionId"]
        query = {"sessionId": session_id, "fileUri": file_url, "category": "ota"}
        path = f"/multipart/sys/{PK}/{device.dk}/file/download"
        whole = http.get(path, params=query)
        assert whole.status_code == 200 and whole.content == content
        part = http.get(path, params=query, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == content[10:20]
        assert part.headers["content-range"] == "bytes 10-19/3000"
        # the relative form of the reference works too
        relative = {**query, "fileUri": "/" + file_url.split("/", 3)[3]}
        assert http.get(path, params=relative).content == content

        # refusals
        wrong = enos.build_http_auth_request(PK, device.dk, "not-the-secret")
        assert http.post(f"/auth/{PK}/{device.dk}", content=wrong).json()["code"] != 200
        assert http.post(f"/auth/{PK}/{device.dk}", content=b"{").status_code == 400
        assert http.get(path, params={**query, "sessionId": "nope"}).status_code == 401
        # a session is for its own device, and a device only gets its own updates' files
        other_path = f"/multipart/sys/{PK}/{other.dk}/file/download"
        assert http.get(other_path, params=query).status_code == 401
        other_auth = enos.build_http_auth_request(PK, other.dk, other.secret)
        other_session = http.post(f"/auth/{PK}/{other.dk}", content=other_auth).json()
        other_query = {**query, "sessionId": other_session["data"]["sessionId"]}
        assert http.get(other_path, params=other_query).status_code == 404
        assert http.get(path, params={**query, "fileUri": "/elsewhere"}).status_code == 404


@pytest.fixture(scope="module")
def relative_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnosHub]:
    yield from hub_fixture(tmp_path_factory, "--enos-file-url", "relative")


def test_relative_file_url_is_served_through_the_broker_pair(relative_hub: EnosHub) -> None:
    """``--enos-file-url relative``: the upgrade names a path, as older EnOS material does."""
    content = secrets.token_bytes(5000)
    md5 = relative_hub.upload("rel-fw", "1.1", content)
    device = Device(relative_hub, "relative")
    try:
        assert device.connect() == 0
        assert device.inform("1.0")["code"] == 200
        relative_hub.start_update("relative", "rel-fw", "1.1")
        params = device.expect_upgrade()["params"]
    finally:
        device.disconnect()
    assert params["sign"] == md5 and params["fileSize"] == len(content)
    file_url = params["fileUrl"]
    assert file_url.startswith("/enos/ota/") and "://" not in file_url
    body = enos.build_http_auth_request(PK, device.dk, device.secret)
    with httpx.Client(base_url=relative_hub.url, timeout=10) as http:
        auth = http.post(enos.http_auth_path(PK, device.dk), content=body)
        session_id = enos.parse_http_auth_response(auth.content)
        target = enos.http_download_target(PK, device.dk, session_id, file_url)
        assert http.get(target).content == content
        # the path is still the hub's own download route below the public URL
        assert http.get(file_url).content == content
