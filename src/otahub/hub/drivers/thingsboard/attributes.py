"""Attribute requests, client attribute posts and shared-attribute pushes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from otahub.hub.drivers.thingsboard.devicestate import CLIENT, SHARED, section
from otahub.hub.drivers.thingsboard.progress import advance
from otahub.mqtt.session import Session
from otahub.protocols.states import UpdateState
from otahub.protocols.thingsboard import (
    AttributeChange,
    OtaKey,
    PackageType,
    SubscriptionKind,
    ThingsBoardError,
    TopicFamily,
    accept_subscription,
    attribute_key,
    build_attributes_response,
    parse_attribute_request,
    parse_client_attributes,
)

if TYPE_CHECKING:
    from otahub.hub.drivers.thingsboard.driver import ThingsBoardDriver

log = logging.getLogger("otahub.hub.thingsboard")

KIND_OF = {PackageType.FIRMWARE: "firmware", PackageType.SOFTWARE: "software"}


def subscription_qos(session: Session, kind: SubscriptionKind) -> int | None:
    """QoS (at most 1) of the session's subscription of ``kind``, None without one."""
    for topic_filter, options in session.subscriptions.items():
        sub = accept_subscription(topic_filter)
        if sub is not None and sub.kind is kind:
            return min(options.qos, 1)
    return None


def apply_change(shared: dict[str, Any], change: AttributeChange) -> None:
    """Deletes first, saves second, as upstream does."""
    for key in change.deleted:
        shared.pop(key, None)
    shared.update(change.saved)


class Attributes:
    def __init__(self, driver: ThingsBoardDriver) -> None:
        self.driver = driver

    async def request(
        self, session: Session, device: str, request_id: int, payload: bytes, family: TopicFamily
    ) -> int | None:
        """Returns the PUBACK verdict: None, or the payload error code."""
        try:
            request = parse_attribute_request(request_id, payload, family)
        except ThingsBoardError as exc:
            return self.driver.payload_error(session, "attribute request", exc)
        state = await self.driver.states.get(device)
        client, shared = request.select(section(state, CLIENT), section(state, SHARED))
        qos = subscription_qos(session, SubscriptionKind.ATTRIBUTE_RESPONSES)
        session.send(request.response_topic, build_attributes_response(client, shared), qos or 1)
        await self._answered(device, shared)
        return None

    async def _answered(self, device: str, shared: dict[str, Any]) -> None:
        """An answer carrying an initiated update's attributes makes it ``sent``."""
        for package in PackageType:
            title = shared.get(attribute_key(package, OtaKey.TITLE))
            if title is None:
                continue
            update = await self.driver.active.get(device, KIND_OF[package])
            if (
                update is not None
                and update.state == UpdateState.PENDING
                and update.driver_state.get("initiated")
                and title == update.title
                and shared.get(attribute_key(package, OtaKey.VERSION)) == update.version
            ):
                await advance(self.driver.core, update.id, UpdateState.SENT)

    async def post(self, session: Session, device: str, payload: bytes) -> int | None:
        """Returns the PUBACK verdict: None, or the payload error code."""
        try:
            values = parse_client_attributes(payload)
        except ThingsBoardError as exc:
            return self.driver.payload_error(session, "client attributes", exc)
        async with self.driver.states.edit(device) as state:
            section(state, CLIENT).update(values)
        return None

    def push(self, device: str, change: AttributeChange) -> bool:
        """Send a change to every live session of the device that subscribed to pushes.

        ThingsBoard serves each session of a device alike; True if any got it.
        """
        sent = False
        for session in self.driver.sessions(device):
            sent = self._push_to(session, device, change) or sent
        return sent

    @staticmethod
    def _push_to(session: Session, device: str, change: AttributeChange) -> bool:
        for topic_filter, options in session.subscriptions.items():
            sub = accept_subscription(topic_filter)
            if sub is None or not sub.starts_attribute_pushes:
                continue
            if sub.family is TopicFamily.V2_PROTO:
                log.info("device %s: protobuf attribute pushes are not supported", device)
                continue
            for message in change.messages():
                session.send(topic_filter, message, min(options.qos, 1))
            return True
        return False
