"""Application messages as the endpoint routes, queues and retains them."""

from __future__ import annotations

import time
from dataclasses import dataclass

from otahub.mqtt.packets import Properties


@dataclass(slots=True, init=False)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    # forwardable v5 properties; None when the message carries none
    properties: Properties | None
    expires_at: float | None  # monotonic deadline from Message Expiry Interval

    # Written out: one is built per routed PUBLISH, and a dataclass's generated
    # __init__ would run as interpreted code in the compiled module.
    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        expires_at: float | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.expires_at = expires_at

    @classmethod
    def from_publish(
        cls, topic: str, payload: bytes, qos: int, retain: bool, props: Properties | None
    ) -> Message:
        forwarded: Properties | None = None
        expires_at: float | None = None
        if props is not None:
            if props.message_expiry_interval is not None:
                expires_at = time.monotonic() + props.message_expiry_interval
            # the PUBLISH properties a server forwards unchanged to subscribers
            # (spec 3.3.2.3); topic alias and subscription identifiers are per connection
            if (
                props.user_properties
                or props.payload_format_indicator is not None
                or props.content_type is not None
                or props.response_topic is not None
                or props.correlation_data is not None
            ):
                forwarded = Properties(
                    payload_format_indicator=props.payload_format_indicator,
                    content_type=props.content_type,
                    response_topic=props.response_topic,
                    correlation_data=props.correlation_data,
                    user_properties=list(props.user_properties),
                )
        return cls(topic, payload, qos, retain, forwarded, expires_at)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def outgoing_properties(self, sub_ids: list[int] | None, now: float) -> Properties | None:
        """Properties for one delivery: the forwarded ones, the remaining expiry, sub ids."""
        if self.expires_at is None and not sub_ids:
            return self.properties
        base = self.properties
        props = Properties(
            payload_format_indicator=base.payload_format_indicator if base else None,
            content_type=base.content_type if base else None,
            response_topic=base.response_topic if base else None,
            correlation_data=base.correlation_data if base else None,
            user_properties=list(base.user_properties) if base else [],
            subscription_identifiers=list(sub_ids) if sub_ids else [],
        )
        if self.expires_at is not None:
            props.message_expiry_interval = max(0, int(self.expires_at - now + 0.999))
        return props
