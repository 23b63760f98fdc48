"""Presence: a device is online while any of its signs of life lasts, written exactly."""

from __future__ import annotations

import asyncio

from otahub.hub.core import HubCore
from otahub.hub.drivers.presence import Presence
from otahub.hub.services.devices import DeviceSpec


async def test_online_follows_the_count_whatever_order_the_writes_run_in(core: HubCore) -> None:
    await core.devices.create(DeviceSpec("twice", "thingsboard", token="tok-twice"))
    presence = Presence(core.devices, "thingsboard")
    first, second = object(), object()
    # connect, connect, the second goes: all at once, as the endpoint's tasks run
    await asyncio.gather(
        presence.add("twice", first),
        presence.add("twice", second),
        presence.remove("twice", second),
    )
    assert (await core.devices.get("twice")).online is True
    await asyncio.gather(presence.add("twice", second), presence.remove("twice", first))
    assert (await core.devices.get("twice")).online is True
    before = (await core.devices.get("twice")).last_seen_at
    await presence.remove("twice", second)
    device = await core.devices.get("twice")
    assert device.online is False
    assert before is not None and device.last_seen_at is not None
    assert device.last_seen_at >= before


async def test_reset_clears_what_a_crash_left_online(core: HubCore) -> None:
    await core.devices.create(DeviceSpec("stale", "thingsboard", token="tok-stale"))
    await core.devices.report("stale", online=True)
    await Presence(core.devices, "thingsboard").reset()
    assert (await core.devices.get("stale")).online is False


async def test_a_sign_for_an_unknown_device_is_kept_but_written_nowhere(core: HubCore) -> None:
    presence = Presence(core.devices, "thin-edge")
    await presence.add("not-yet", "session")
    assert presence.is_online("not-yet")
    await core.devices.create(DeviceSpec("not-yet", "thin-edge"))
    await presence.write("not-yet")
    assert (await core.devices.get("not-yet")).online is True


async def test_a_sign_for_several_devices_ends_for_all_and_nothing_is_left_behind(
    core: HubCore,
) -> None:
    for name in ("gw", "child-a", "child-b"):
        await core.devices.create(DeviceSpec(name, "thin-edge"))
    presence = Presence(core.devices, "thin-edge")
    session, other = object(), object()
    await asyncio.gather(
        presence.add_for("gw", session),
        presence.add_for("child-a", session),
        presence.add_for("child-a", session),  # again: still one
        presence.add_for("child-b", session),
        presence.add_for("child-b", other),
    )
    assert presence.signs("child-b") == [session, other]
    assert all([(await core.devices.get(n)).online for n in ("gw", "child-a", "child-b")])
    # an idle device keeps its signs only: no lock outlives the writes
    assert presence._locks == {}
    ended = presence.ended(session)
    assert ended is not None
    await ended
    assert presence.ended(session) is None
    assert [(await core.devices.get(n)).online for n in ("gw", "child-a", "child-b")] == [
        False,
        False,
        True,  # its other sign lives on
    ]
    assert presence.signs("child-b") == [other]
    assert presence._locks == {}
