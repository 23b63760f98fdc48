"""Point reads of a connect wave share queries: device lookups and active updates."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from otahub.hub.core import HubCore
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import NotFound
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.read_batch import ReadBatch
from otahub.hub.services.updates import UpdateRequest
from tests.hub.conftest import chunks


async def test_lookups_asked_for_together_share_one_query(core: HubCore) -> None:
    for n in range(20):
        await core.devices.create(DeviceSpec(name=f"dev{n}", dialect="thin-edge"))
    reads = core.devices._reads
    before = reads.batches
    names = [f"dev{n}" for n in range(20)] + ["dev3", "nobody"]
    found = await asyncio.gather(*(core.devices.get(n) for n in names), return_exceptions=True)
    assert reads.batches == before + 1
    assert [getattr(v, "name", None) for v in found[:21]] == names[:21]
    assert isinstance(found[21], NotFound)


async def test_a_lookup_sees_every_commit_made_before_it_was_asked(core: HubCore) -> None:
    """A name asked for while a batch is being read waits for the next batch."""
    await core.devices.create(DeviceSpec(name="old", dialect="thin-edge"))
    first = asyncio.ensure_future(core.devices.get("old"))
    await asyncio.sleep(0)  # the first batch is under way
    await core.devices.create(DeviceSpec(name="new", dialect="thin-edge"))
    assert (await core.devices.get("new")).name == "new"
    assert (await first).name == "old"


async def test_active_updates_of_several_devices_and_kinds_in_one_query(core: HubCore) -> None:
    await core.firmware.upload(PackageMeta(title="fw", version="2"), chunks(b"x" * 100))
    for name in ("a", "b", "c"):
        await core.devices.create(DeviceSpec(name=name, dialect="thin-edge"))
    ua = await core.updates.create(UpdateRequest("a", "fw", "2", force=True))
    ub = await core.updates.create(UpdateRequest("b", "fw", "2", force=True))
    await core.updates.cancel(ub.id, reason="test")
    reads = core.updates._active_reads
    before = reads.batches
    keys = [("a", "firmware"), ("a", "software"), ("b", "firmware"), ("c", "firmware")]
    found = await asyncio.gather(*(core.updates.active_for(d, k) for d, k in keys))
    assert reads.batches == before + 1
    assert [None if u is None else u.id for u in found] == [ua.id, None, None, None]


async def test_a_failed_read_fails_its_callers_and_the_next_read_runs() -> None:
    calls: list[list[str]] = []

    async def fetch(keys: Sequence[str]) -> dict[str, int]:
        calls.append(list(keys))
        if len(calls) == 1:
            raise RuntimeError("database gone")
        return {k: len(k) for k in keys}

    reads: ReadBatch[str, int] = ReadBatch(fetch, max_batch=2)
    failed = await asyncio.gather(reads.get("a"), reads.get("bb"), return_exceptions=True)
    assert [type(f) for f in failed] == [RuntimeError, RuntimeError]
    # past max_batch, the keys are read in several queries
    assert await asyncio.gather(*(reads.get(k) for k in ("a", "bb", "ccc"))) == [1, 2, 3]
    assert calls == [["a", "bb"], ["a", "bb"], ["ccc"]]


async def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    release = asyncio.Event()

    async def fetch(keys: Sequence[str]) -> dict[str, int]:
        await release.wait()
        return dict.fromkeys(keys, 1)

    reads: ReadBatch[str, int] = ReadBatch(fetch)
    gone = asyncio.ensure_future(reads.get("k"))
    stays = asyncio.ensure_future(reads.get("k"))
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    assert await stays == 1
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_enos_logins_of_a_wave_look_their_devices_up_together(core: HubCore) -> None:
    for n in range(5):
        await core.devices.create(
            DeviceSpec(
                name=f"e{n}", dialect="enos", product_key="pk", device_key=f"dk{n}", secret="s" * 16
            )
        )
    reads = core.devices._enos_reads
    before = reads.batches
    keys = [("pk", f"dk{n}") for n in range(5)] + [("pk", "nobody"), ("other", "dk1")]
    found = await asyncio.gather(*(core.devices.by_enos_keys(p, d) for p, d in keys))
    assert reads.batches == before + 1
    assert [None if v is None else v.name for v in found] == [f"e{n}" for n in range(5)] + [
        None,
        None,
    ]
