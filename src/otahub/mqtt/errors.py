"""The one error type of the MQTT codec and endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otahub.mqtt.reason_codes import ReasonCode

if TYPE_CHECKING:
    from otahub.mqtt.packets import Packet


class MQTTError(Exception):
    """A packet broke the MQTT specification.

    ``reason_code`` is the MQTT 5.0 reason code the peer should get in a
    DISCONNECT (or CONNACK, when the error is in CONNECT); for MQTT 3.1.1,
    which has no such codes, the connection is simply closed.

    ``packets`` holds the packets a decoder completed in the same ``feed``
    call before it hit the error; the peer did send them.
    """

    def __init__(self, message: str, reason_code: int = ReasonCode.MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.message = message
        self.reason_code = int(reason_code)
        self.packets: list[Packet] = []

    def __repr__(self) -> str:
        return f"MQTTError({self.message!r}, reason_code=0x{self.reason_code:02X})"
