"""Attribute requests, client attribute posts and shared-attribute pushes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from otahub.hub.drivers.thingsboard.devicestate import CLIENT, SHARED, section
from otahub.hub.drivers.thingsboard.progress import advance
from otahub.mqtt import Client
from otahub.protocols.states import UpdateState
from otahub.protocols.thingsboard import (
    ACCEPTED_FILTERS,
    AttributeChange,
    OtaKey,
    PackageType,
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


# The filters that start shared-attribute pushes, v1 first; each is also the
# topic its pushes go out on.
_PUSHES: Final = tuple(
    sub
    for sub in sorted(
        (accept_subscription(topic_filter) for topic_filter in ACCEPTED_FILTERS),
        key=lambda sub: "" if sub is None else sub.topic_filter,
    )
    if sub is not None and sub.starts_attribute_pushes
)


def subscription_qos(session: Client, topic: str) -> int | None:
    """QoS (at most 1) of the session's subscription ``topic`` goes out on, None without one."""
    qos = session.subscription_qos(topic)
    return None if qos is None else min(qos, 1)


def apply_change(shared: dict[str, Any], change: AttributeChange) -> None:
    """Deletes first, saves second, as upstream does."""
    for key in change.deleted:
        shared.pop(key, None)
    shared.update(change.saved)


class Attributes:
    def __init__(self, driver: ThingsBoardDriver) -> None:
        self.driver = driver

    async def request(
        self, session: Client, device: str, request_id: int, payload: bytes, family: TopicFamily
    ) -> int | None:
        """Returns the PUBACK verdict: None, or the payload error code."""
        try:
            request = parse_attribute_request(request_id, payload, family)
        except ThingsBoardError as exc:
            return self.driver.payload_error(session, "attribute request", exc)
        state = await self.driver.states.get(device)
        client, shared = request.select(section(state, CLIENT), section(state, SHARED))
        qos = subscription_qos(session, request.response_topic)
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

    async def post(self, session: Client, device: str, payload: bytes) -> int | None:
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
    def _push_to(session: Client, device: str, change: AttributeChange) -> bool:
        for sub in _PUSHES:
            qos = subscription_qos(session, sub.topic_filter)
            if qos is None:
                continue
            if sub.family is TopicFamily.V2_PROTO:
                log.info("device %s: protobuf attribute pushes are not supported", device)
                continue
            for message in change.messages():
                session.send(sub.topic_filter, message, qos)
            return True
        return False
