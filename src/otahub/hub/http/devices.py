"""``/api/v1/devices``: the device registry."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from otahub.hub.http.deps import Core
from otahub.hub.http.updates import UpdateOut
from otahub.hub.services.device_batch import MAX_BATCH, BatchRefused, Refusal
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import Invalid
from otahub.hub.services.views import DeviceView

router = APIRouter(prefix="/devices", tags=["devices"])

Dialect = Literal["thin-edge", "tedge-legacy", "thingsboard", "enos"]


class DeviceCreate(BaseModel):
    name: str
    dialect: Dialect
    device_type: str | None = Field(None, description="ThingsBoard profile / EnOS product")
    token: str | None = Field(None, description="ThingsBoard access token (thingsboard)")
    product_key: str | None = Field(None, description="EnOS product key (enos)")
    device_key: str | None = Field(None, description="EnOS device key (enos)")
    secret: str | None = Field(None, description="EnOS device secret (enos)")
    password: str | None = Field(
        None,
        description="MQTT password (thin-edge, tedge-legacy; the user name is the device "
        "name); stored hashed, never returned",
    )
    gateway: bool = Field(
        False,
        description="a thin-edge gateway: the children it registers (te/device/<child>//) "
        "belong to it and it may use their topics",
    )
    certificate: str | None = Field(
        None,
        description="X.509 client certificate, PEM (any dialect): the device is recognised by "
        "its SHA-256 fingerprint (or CN) on the MQTT TLS listener; replaces the ThingsBoard "
        "token and the EnOS secret",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="key=value pairs that groups and rollouts select by (e.g. site, ring)",
    )

    def spec(self) -> DeviceSpec:
        return DeviceSpec(
            name=self.name,
            dialect=self.dialect,
            device_type=self.device_type,
            token=self.token,
            product_key=self.product_key,
            device_key=self.device_key,
            secret=self.secret,
            password=self.password,
            gateway=self.gateway,
            certificate=self.certificate,
            labels=self.labels,
        )


class Reported(BaseModel):
    title: str | None
    version: str | None


class DeviceOut(BaseModel):
    id: int
    name: str
    dialect: str
    device_type: str | None
    token: str | None
    product_key: str | None
    device_key: str | None
    has_secret: bool = Field(description="secrets are stored, never returned")
    has_password: bool = Field(
        description="MQTT credentials are set (the password is never returned)"
    )
    gateway: bool = Field(description="a thin-edge gateway")
    owner: str | None = Field(description="the gateway that registered this thin-edge child")
    certificate_sha256: str | None = Field(
        None, description="SHA-256 fingerprint of the device's client certificate"
    )
    certificate_cn: str | None = Field(None, description="subject CN of that certificate")
    labels: dict[str, str]
    firmware: Reported
    software: Reported
    last_seen_at: datetime | None
    online: bool
    created_at: datetime
    updates: list[UpdateOut] | None = None

    @classmethod
    def of(cls, view: DeviceView, updates: list[UpdateOut] | None = None) -> DeviceOut:
        return cls(
            id=view.id,
            name=view.name,
            dialect=view.dialect,
            device_type=view.device_type,
            token=view.tb_token,
            product_key=view.enos_product_key,
            device_key=view.enos_device_key,
            has_secret=view.enos_device_secret is not None,
            has_password=view.has_password,
            gateway=view.gateway,
            owner=view.owner,
            certificate_sha256=view.cert_sha256,
            certificate_cn=view.cert_cn,
            labels=view.labels,
            firmware=Reported(title=view.current_fw_title, version=view.current_fw_version),
            software=Reported(title=view.current_sw_title, version=view.current_sw_version),
            last_seen_at=view.last_seen_at,
            online=view.online,
            created_at=view.created_at,
            updates=updates,
        )


@router.post("", status_code=201)
async def create_device(body: DeviceCreate, core: Core) -> DeviceOut:
    """Register a device with its dialect's credentials; names and credentials are unique."""
    return DeviceOut.of(await core.devices.create(body.spec()))


class DeviceRow(DeviceCreate):
    """A row of a batch: a misspelt key is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Registered(BaseModel):
    id: int
    name: str


class BatchResult(BaseModel):
    checked: int = Field(description="rows checked")
    created: int = Field(description="devices registered (0 for a dry run)")
    devices: list[Registered] = Field(description="the devices registered, in row order")


@router.post(
    "/batch",
    status_code=201,
    responses={
        422: {
            "description": "rows refused, nothing registered: `refused` lists each "
            "(`row` from 1, `name`, `reason`)"
        }
    },
)
async def create_devices(
    rows: Annotated[
        list[Any],
        Body(description="device objects, as for a single registration (labels included)"),
    ],
    core: Core,
    response: Response,
    dry_run: Annotated[
        bool, Query(description="check every row, register nothing (answers 200)")
    ] = False,
) -> BatchResult:
    """Register many devices, all or nothing: one refused row refuses the batch."""
    if len(rows) > MAX_BATCH:
        raise Invalid(f"at most {MAX_BATCH} devices per batch, not {len(rows)}")
    refused: list[Refusal] = []
    specs: list[DeviceSpec] = []
    positions: list[int] = []  # each spec's row
    for index, row in enumerate(rows):
        if index % 1000 == 999:
            await asyncio.sleep(0)  # a large batch does not hold the event loop
        if not isinstance(row, dict):
            refused.append(Refusal(index, None, "a row is a JSON object (a device)"))
            continue
        try:
            specs.append(DeviceRow.model_validate(row).spec())
            positions.append(index)
        except ValidationError as exc:
            name = row.get("name")
            refused.append(
                Refusal(index, name if isinstance(name, str) else None, _validation_reason(exc))
            )
    if refused or dry_run:
        refused += await core.devices.check_many(specs, positions)
        if refused:
            raise BatchRefused(refused, len(rows))
        response.status_code = 200
        return BatchResult(checked=len(rows), created=0, devices=[])
    views = await core.devices.create_many(specs)
    return BatchResult(
        checked=len(rows),
        created=len(views),
        devices=[Registered(id=v.id, name=v.name) for v in views],
    )


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())) or "row"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


@router.get("")
async def list_devices(
    core: Core,
    dialect: Annotated[Dialect | None, Query()] = None,
    filter: Annotated[
        str | None,
        Query(
            description="only the devices this filter expression selects, e.g. "
            "'site=berlin,dialect=thingsboard' (see the groups)"
        ),
    ] = None,
) -> list[DeviceOut]:
    """The devices by name, all or those of a dialect or a filter."""
    if filter is None:
        views = await core.devices.list(dialect=dialect)
    else:
        views = sorted(await core.groups.resolve(filter=filter), key=lambda v: v.name)
        views = [v for v in views if dialect is None or v.dialect == dialect]
    return [DeviceOut.of(v) for v in views]


@router.get("/{name}")
async def get_device(name: str, core: Core) -> DeviceOut:
    """A device with its update history, newest first."""
    view = await core.devices.get(name)
    history = await core.updates.list(device=name, limit=1000)
    return DeviceOut.of(view, [UpdateOut.of(u) for u in history])


class LabelChange(BaseModel):
    set: dict[str, str] = Field(
        default_factory=dict, description="labels to add or change (key: value)"
    )
    remove: list[str] = Field(
        default_factory=list, description="label keys to remove (absent ones are ignored)"
    )


@router.patch("/{name}/labels")
async def change_device_labels(name: str, body: LabelChange, core: Core) -> DeviceOut:
    """Set and remove labels of a device; the labels not named stay as they are."""
    return DeviceOut.of(await core.devices.set_labels(name, body.set, body.remove))


class PasswordChange(BaseModel):
    password: str | None = Field(
        description="the new MQTT password (thin-edge, tedge-legacy); null removes it, "
        "and the device then connects without credentials"
    )


@router.put("/{name}/password")
async def set_device_password(name: str, body: PasswordChange, core: Core) -> DeviceOut:
    """Set, change or remove a device's MQTT password; its connected sessions are closed."""
    return DeviceOut.of(await core.devices.set_password(name, body.password))


class DeviceChange(BaseModel):
    """Only the fields given change; null removes a value."""

    device_type: str | None = Field(None, description="ThingsBoard profile / EnOS product")
    token: str | None = Field(None, description="ThingsBoard access token (thingsboard)")
    product_key: str | None = Field(None, description="EnOS product key (enos)")
    device_key: str | None = Field(None, description="EnOS device key (enos)")
    secret: str | None = Field(None, description="EnOS device secret (enos)")
    certificate: str | None = Field(None, description="X.509 client certificate, PEM")


@router.patch("/{name}")
async def change_device(name: str, body: DeviceChange, core: Core) -> DeviceOut:
    """Change a device's type or credentials; when credentials change, its sessions close."""
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    return DeviceOut.of(await core.devices.change(name, changes))


@router.delete(
    "/{name}",
    status_code=204,
    responses={409: {"description": "the device has active updates (listed in active_updates)"}},
)
async def delete_device(
    name: str,
    core: Core,
    force: Annotated[
        bool, Query(description="cancel the device's active updates, then delete it")
    ] = False,
) -> Response:
    """Delete a device; 409 while it has active updates unless forced.

    Its finished updates stay in the history (``GET /updates``, with
    ``device_id`` null); its id is never reused.
    """
    await core.devices.delete(name, force=force)
    return Response(status_code=204)
