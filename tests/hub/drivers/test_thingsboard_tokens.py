"""ThingsBoard access tokens resolved from memory, with the registry behind it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from otahub.hub.core import HubCore
from otahub.hub.drivers.thingsboard.auth import TokenIndex
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.views import DeviceView


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


async def test_a_lookup_that_races_with_a_token_change_does_not_bring_the_old_token_back(
    core: HubCore,
) -> None:
    await core.devices.create(DeviceSpec(name="a", dialect="thingsboard", token="tok-old"))
    tokens = TokenIndex(core.devices)
    read = core.devices.by_token

    async def slow_read(token: str) -> DeviceView | None:
        view = await read(token)  # the registry still answers with the old token...
        tokens.put("a", "tok-new")  # ...while the change's event arrives
        return view

    tokens.devices = SimpleNamespace(by_token=slow_read)  # type: ignore[assignment]
    assert await tokens.find("tok-old") == "a"  # answered as the registry said
    # but not remembered: the change that came in meanwhile stands
    await core.devices.change("a", {"token": "tok-new"})
    tokens.devices = core.devices
    tokens.ttl_s = 3600.0
    assert "tok-old" not in tokens._device_of
    assert await tokens.find("tok-new") == "a"
