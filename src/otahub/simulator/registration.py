"""``--register``: the simulated devices in the hub's registry, with their credentials.

``POST /api/v1/devices/batch`` (a list of device objects as for a single
create) in slices where the hub has it; one ``POST /api/v1/devices`` each
where it answers 404/405. A device that exists already counts as registered
(409 for a single create; a batch refused for rows that exist is sent again
without them), so a rerun with the same prefix is fine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from otahub.simulator.config import DeviceSpec, Dialect

log = logging.getLogger("otahub.simulator")

BATCH = 2000


class RegistrationFailed(Exception):
    """The hub refused a device (the message says which and why)."""


def device_body(spec: DeviceSpec, *, passwords: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"name": spec.name, "dialect": spec.dialect.value}
    if spec.dialect is Dialect.THINGSBOARD:
        body["token"] = spec.token
    elif spec.dialect is Dialect.ENOS:
        body.update(product_key=spec.product_key, device_key=spec.device_key, secret=spec.secret)
    elif passwords:
        body["password"] = spec.password
    return body


def _problem(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text.strip()[:300]}"


async def register(
    base_url: str,
    specs: Sequence[DeviceSpec],
    *,
    passwords: bool,
    admin_token: str | None,
) -> int:
    """Register ``specs``; returns how many were new. Raises :class:`RegistrationFailed`."""
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
    bodies = [device_body(spec, passwords=passwords) for spec in specs]
    async with httpx.AsyncClient(
        base_url=f"{base_url.rstrip('/')}/api/v1", headers=headers, timeout=120.0
    ) as client:
        created = 0
        batch_route = True
        for start in range(0, len(bodies), BATCH):
            part = bodies[start : start + BATCH]
            if batch_route:
                outcome = await _batch(client, part)
                if outcome is None:
                    log.info("the hub has no batch registration; one request per device")
                    batch_route = False
                elif isinstance(outcome, int):
                    created += outcome
                    continue
                else:
                    part = outcome  # the batch held devices already there: these one by one
            for body in part:
                response = await client.post("/devices", json=body)
                if response.status_code < 300:
                    created += 1
                elif response.status_code != 409:
                    raise RegistrationFailed(f"device {body['name']}: {_problem(response)}")
        return created


async def _batch(
    client: httpx.AsyncClient, part: list[dict[str, Any]]
) -> int | list[dict[str, Any]] | None:
    """One batch: the number registered; None without a batch route; or the rows to
    register one by one when the batch was refused for devices that exist already."""
    response = await client.post("/devices/batch", json=part)
    if response.status_code in (404, 405):
        return None
    if response.status_code < 300:
        return len(part)
    if response.status_code not in (409, 422):
        raise RegistrationFailed(f"batch of {len(part)} devices: {_problem(response)}")
    # all or nothing: a rerun's existing devices refuse the batch; the rest are
    # registered once those are left out (their credentials derive from the name)
    try:
        refused = response.json().get("refused")
    except (ValueError, AttributeError):
        refused = None
    if not isinstance(refused, list):
        return part
    existing: set[str] = set()
    for row in refused:
        reason = str(row.get("reason", "")) if isinstance(row, dict) else ""
        name = row.get("name") if isinstance(row, dict) else None
        if not isinstance(name, str) or "already" not in reason:
            raise RegistrationFailed(f"batch of {len(part)} devices: {_problem(response)}")
        existing.add(name)
    rest = [body for body in part if body["name"] not in existing]
    if not rest:
        return 0
    return await _batch(client, rest)
