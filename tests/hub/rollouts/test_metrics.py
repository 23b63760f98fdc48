"""The rollout gauge on /metrics follows the rollouts' devices, scrape by scrape."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from otahub.hub.core import HubCore
from tests.hub.rollouts.conftest import finish, make_fleet, settle, spec, started


async def _rollout_gauge(core: HubCore) -> dict[tuple[str, str], float]:
    text = (await core.metrics.render()).decode()
    return {
        (sample.labels["rollout"], sample.labels["state"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "otahub_rollout_devices"
        for sample in family.samples
    }


async def test_scrapes_count_an_active_rollout_s_devices_and_drop_it_once_it_ends(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 3)
    await core.rollouts.create(spec("spring"))
    # no targets before the start: they are resolved then
    assert (await _rollout_gauge(core))[("spring", "waiting")] == 0
    await core.rollouts.start("spring")
    await settle(core)
    running = await started(core, "spring")
    assert (await _rollout_gauge(core))[("spring", "started")] == len(running) == 3
    await finish(core, running[:1])
    gauge = await _rollout_gauge(core)
    assert gauge[("spring", "succeeded")] == 1
    assert gauge[("spring", "started")] == 2
    await core.rollouts.cancel("spring")
    assert not any(name == "spring" for name, _ in await _rollout_gauge(core))
