"""``--register``: the simulated devices in the hub's registry, with their credentials.

``POST /api/v1/devices/batch`` (a list of device objects as for a single
create) in slices where the hub has it; one ``POST /api/v1/devices`` each
where it answers 404/405. A device that exists already (409) counts as
registered, so a rerun with the same prefix is fine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from otahub.simulator.config import DeviceSpec, Dialect

log = logging.getLogger("otahub.simulator")

BATCH = 500


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
                response = await client.post("/devices/batch", json=part)
                if response.status_code in (404, 405):
                    log.info("the hub has no batch registration; one request per device")
                    batch_route = False
                elif response.status_code < 300:
                    created += len(part)
                    continue
                elif response.status_code != 409:
                    raise RegistrationFailed(f"batch of {len(part)} devices: {_problem(response)}")
            # one at a time: no batch route, or the batch held a device already there
            for body in part:
                response = await client.post("/devices", json=body)
                if response.status_code < 300:
                    created += 1
                elif response.status_code != 409:
                    raise RegistrationFailed(f"device {body['name']}: {_problem(response)}")
        return created
