"""Topic rules of thin-edge and tedge-legacy devices, and of anonymous clients.

A thin-edge device uses ``te/device/<own id>/...`` only, a legacy child
``tedge/<own id>/...`` only, to publish and to subscribe (no wildcard can
reach past its own id); a thin-edge gateway also its children's, the
devices it was first to use (see ``DeviceDirectory.claim``). Anonymous
clients are the local broker's trusted connectors (as on a thin-edge
gateway); they may not speak ThingsBoard's or EnOS's per-session topics, nor
act for a device that logs in with a password or a client certificate or
belongs to a gateway; one let in from beyond the ``anonymous_from`` networks
(``--allow-anonymous``) may not bring new devices into being.
"""

from __future__ import annotations

from dataclasses import dataclass

from otahub.hub.device_auth.directory import DeviceDirectory
from otahub.hub.services.views import DeviceView
from otahub.protocols.thingsboard import DEVICE_TOPIC_PREFIXES

# Topics that only a logged-in ThingsBoard or EnOS session speaks on (the
# drivers answer them per connection); no anonymous client has such an identity.
SESSION_TOPIC_PREFIXES = (*DEVICE_TOPIC_PREFIXES, "/sys/", "/ext/session/")

THIN_EDGE = "thin-edge"
TEDGE_LEGACY = "tedge-legacy"


def topic_prefix(dialect: str, device: str) -> str:
    """Everything a device of ``dialect`` may use is below this prefix."""
    if dialect == TEDGE_LEGACY:
        return f"tedge/{device}/"
    return f"te/device/{device}/"


def device_of_topic(topic: str) -> str | None:
    """The device a thin-edge (``te/device/<id>/...``) or legacy (``tedge/<id>/...``)
    topic belongs to; None for any other topic."""
    parts = topic.split("/", 3)
    if len(parts) >= 3 and parts[0] == "te" and parts[1] == "device":
        return parts[2] or None
    if len(parts) >= 2 and parts[0] == "tedge":
        return parts[1] or None
    return None


@dataclass(frozen=True, slots=True)
class OwnTopicsAcl:
    """A device confined to the topics below ``prefix``."""

    prefix: str

    def can_publish(self, topic: str) -> bool:
        return topic.startswith(self.prefix)

    def can_subscribe(self, topic_filter: str) -> bool | int:
        # the prefix is literal: a filter with a wildcard at or before the
        # device's id does not start with it
        return topic_filter.startswith(self.prefix)


@dataclass(frozen=True, slots=True)
class GatewayAcl:
    """A thin-edge gateway: its own ``te/device/<name>/...`` topics and its children's."""

    name: str
    directory: DeviceDirectory

    def _may_use(self, topic: str) -> bool:
        device = device_of_topic(topic)
        if device is None or not topic.startswith(f"te/device/{device}/"):
            return False
        if "+" in device or "#" in device:
            return False  # a wildcard for the id would reach every device
        return device == self.name or self.directory.claim(device, self.name)

    def can_publish(self, topic: str) -> bool:
        return self._may_use(topic)

    def can_subscribe(self, topic_filter: str) -> bool | int:
        return self._may_use(topic_filter)


def device_acl(device: DeviceView, directory: DeviceDirectory) -> GatewayAcl | OwnTopicsAcl:
    """The topic rules of a thin-edge or legacy device, however it logged in."""
    if device.gateway:
        return GatewayAcl(device.name, directory)
    return OwnTopicsAcl(topic_prefix(device.dialect, device.name))


@dataclass(frozen=True, slots=True)
class AnonymousAcl:
    directory: DeviceDirectory
    # came from an ``anonymous_from`` network (False: let in by --allow-anonymous)
    trusted: bool

    def can_publish(self, topic: str) -> bool:
        if topic.startswith(SESSION_TOPIC_PREFIXES):
            return False
        device = device_of_topic(topic)
        if device is None:
            return True
        if self.directory.has_credentials(device) or self.directory.owner(device) is not None:
            return False
        return self.trusted or self.directory.exists(device)

    def can_subscribe(self, topic_filter: str) -> bool | int:
        return True
