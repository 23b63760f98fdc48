"""Which package each device fetched last, to tell whose report a state is.

ThingsBoard telemetry (``fw_state``, ``fw_error``) names no package and no
request: a device still busy with an earlier package (the SDK retries a
failed checksum by fetching it again) reports ``FAILED`` while a new
update is already active. What the device downloaded last is the only
link between a report and an update, so a post-download state (downloaded,
verified, installing, succeeded, failed) about another package than the
active update's is not that update's, and is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from otahub.hub.services.views import UpdateView
from otahub.protocols.states import UpdateState
from otahub.protocols.thingsboard import PackageType

# States a device can only reach for a package it has fetched.
AFTER_FETCH = frozenset(
    {
        UpdateState.DOWNLOADED,
        UpdateState.VERIFIED,
        UpdateState.INSTALLING,
        UpdateState.SUCCEEDED,
        UpdateState.FAILED,
    }
)


@dataclass(frozen=True, slots=True)
class Fetch:
    package_id: int
    update_id: int | None  # None: fetched as the assigned package, with no update active


class Fetches:
    def __init__(self) -> None:
        self._last: dict[tuple[str, PackageType], Fetch] = {}

    def note(self, device: str, package: PackageType, fetch: Fetch) -> None:
        self._last[(device, package)] = fetch

    def forget(self, device: str) -> None:
        for key in [k for k in self._last if k[0] == device]:
            del self._last[key]

    def last(self, device: str, package: PackageType) -> Fetch | None:
        """What ``device`` fetched last of ``package``'s kind (telemetry records it
        when it arrives: the device may have fetched another by the time it is applied)."""
        return self._last.get((device, package))


def other_than(fetch: Fetch | None, update: UpdateView, state: UpdateState) -> Fetch | None:
    """The fetch a report of ``state`` is about (``fetch``: the device's last when the
    report came), when that is not ``update``'s package."""
    if state not in AFTER_FETCH:
        return None
    if fetch is None or fetch.update_id == update.id:
        return None
    if fetch.update_id is None and fetch.package_id == update.package_id:
        return None  # the same bytes: the report may well be this update's
    return fetch
