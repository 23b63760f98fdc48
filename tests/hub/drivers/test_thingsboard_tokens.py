"""ThingsBoard access tokens resolved from memory, with the registry behind it."""

from __future__ import annotations

import asyncio

from otahub.hub.core import HubCore
from otahub.hub.drivers.thingsboard.auth import TokenIndex
from otahub.hub.services.devices import DeviceSpec


async def test_tokens_follow_puts_and_fall_back_to_the_registry(core: HubCore) -> None:
    await core.devices.create(DeviceSpec(name="a", dialect="thingsboard", token="tok-a"))
    await core.devices.create(
        DeviceSpec(name="e", dialect="enos", product_key="p", device_key="k", secret="s")
    )
    tokens = TokenIndex(core.devices)
    # not loaded (registered through another instance): found in the registry once
    assert await tokens.find("tok-a") == "a"
    await core.devices.change("a", {"token": "tok-a2"})
    tokens.put("a", "tok-a2")  # what the driver does on the credentials event
    assert await tokens.find("tok-a2") == "a"
    assert await tokens.find("tok-a") is None  # the old token is gone from memory and registry
    assert await tokens.find("nobody") is None
    tokens.put("a", None)  # deleted
    await core.devices.delete("a")
    assert await tokens.find("tok-a2") is None


async def test_a_token_revoked_through_another_hub_stops_working_after_the_ttl(
    core: HubCore,
) -> None:
    await core.devices.create(DeviceSpec(name="a", dialect="thingsboard", token="tok-a"))
    tokens = TokenIndex(core.devices, ttl_s=0.2)
    assert await tokens.find("tok-a") == "a"
    # another hub instance changes the token: this hub hears nothing of it
    await core.devices.change("a", {"token": "tok-new"})
    assert await tokens.find("tok-a") == "a"  # trusted within the TTL
    await asyncio.sleep(0.25)
    assert await tokens.find("tok-a") is None
    assert await tokens.find("tok-new") == "a"
    # and a device removed elsewhere
    await core.devices.delete("a")
    await asyncio.sleep(0.25)
    assert await tokens.find("tok-new") is None
