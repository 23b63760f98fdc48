"""A paho-mqtt 2.x client wrapped for tests: blocking calls, received messages queued."""

from __future__ import annotations

import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

V311 = MQTTProtocolVersion.MQTTv311
V5 = MQTTProtocolVersion.MQTTv5


class PahoClient:
    def __init__(
        self,
        port: int,
        client_id: str = "",
        protocol: MQTTProtocolVersion = V311,
        *,
        clean: bool = True,
        session_expiry: int | None = None,
        manual_ack: bool = False,
        username: str | None = None,
        password: str | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
        keepalive: int = 30,
    ) -> None:
        self.port = port
        self.protocol = protocol
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self.connect_rc: Any = None
        self.disconnect_rc: Any = None
        self.connack_properties: Any = None
        self.session_present: bool | None = None
        self._subacks: dict[int, list[Any]] = {}
        self._acked: set[int] = set()
        self._cond = threading.Condition()
        kwargs: dict[str, Any] = {
            "callback_api_version": CallbackAPIVersion.VERSION2,
            "client_id": client_id,
            "protocol": protocol,
            "manual_ack": manual_ack,
            "reconnect_on_failure": False,
        }
        if protocol != V5:
            kwargs["clean_session"] = clean
        self.clean = clean
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.client = mqtt.Client(**kwargs)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(*will)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.connect_rc = rc
        self.connack_properties = props
        self.session_present = flags.session_present
        self._connected.set()

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.disconnect_rc = rc
        self._disconnected.set()

    def _on_subscribe(self, c: Any, u: Any, mid: int, rcs: list[Any], props: Any = None) -> None:
        with self._cond:
            self._subacks[mid] = rcs
            self._cond.notify_all()

    def _on_publish(self, c: Any, u: Any, mid: int, rc: Any, props: Any = None) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def connect(self, timeout: float = 10.0) -> Any:
        props = None
        if self.protocol == V5:
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
            self.client.connect(
                "127.0.0.1", self.port, self.keepalive, clean_start=self.clean, properties=props
            )
        else:
            self.client.connect("127.0.0.1", self.port, self.keepalive)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise TimeoutError("no CONNACK")
        return self.connect_rc

    def subscribe(self, topic: str, qos: int = 0, timeout: float = 5.0) -> list[Any]:
        rc, mid = self.client.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, timeout):
                raise TimeoutError("no SUBACK")
            return self._subacks[mid]

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 0,
        retain: bool = False,
        timeout: float = 5.0,
    ) -> None:
        info = self.client.publish(topic, payload, qos, retain)
        if qos:
            with self._cond:
                if not self._cond.wait_for(lambda: info.mid in self._acked, timeout):
                    raise TimeoutError(f"no acknowledgement for QoS {qos} publish")

    def expect(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def expect_none(self, timeout: float = 0.5) -> None:
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {message.topic}: {message.payload!r}")

    def wait_disconnected(self, timeout: float = 10.0) -> bool:
        return self._disconnected.wait(timeout)

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Lose the connection without a DISCONNECT (like a power cut)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()
