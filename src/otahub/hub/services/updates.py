"""Updates: one package for one device, driven through the canonical states.

Every state change is stored as a transition row (the audit trail) and
published on the event bus after it is committed. A new update is handed to
its dialect's driver explicitly (``set_starter``), after the event: what the
driver raises fails the update at once, and the caller gets it failed. The
bus is for observers (dashboard, rollouts, logs); their errors are logged.

Each update has a deadline that activity pushes forward; the sweeper fails
updates that pass it, so an update never hangs in ``downloading`` forever
because a device went silent.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy import insert as sql_insert
from sqlalchemy import update as sql_update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.services.assignments import TYPE_ORIGIN_KEY
from otahub.hub.services.errors import Conflict, Invalid, NotFound, ServiceError
from otahub.hub.services.events import (
    Event,
    EventBus,
    UpdateCreated,
    UpdateTransitioned,
)
from otahub.hub.services.read_batch import ReadBatch
from otahub.hub.services.views import DeviceView, PackageView, TransitionView, UpdateView
from otahub.hub.store.batching import GroupCommit
from otahub.hub.store.database import Database
from otahub.hub.store.ids import is_row_id
from otahub.hub.store.models import (
    TERMINAL_STATES,
    Device,
    FirmwarePackage,
    Update,
    UpdateTransition,
    utcnow,
)
from otahub.logs import update_fields
from otahub.protocols.states import InvalidTransition, UpdateState, check_transition, is_terminal

log = logging.getLogger("otahub.hub.updates")

MAX_TIMEOUT_S = 30 * 24 * 3600.0
UPDATE_MODES = ("push", "on-request")
TIMEOUT_CODE = "timeout"
START_FAILED_CODE = "start_failed"


def parse_state(value: str) -> UpdateState:
    try:
        return UpdateState(value)
    except ValueError:
        known = ", ".join(s.value for s in UpdateState)
        raise Invalid(f"unknown update state {value!r} (known: {known})") from None


def check_timeout(timeout_s: float) -> float:
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise Invalid(f"timeout must be between 0 and {MAX_TIMEOUT_S:.0f} seconds")
    return float(timeout_s)


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    device: str
    title: str
    version: str
    replace: bool = False
    timeout_s: float | None = None
    mode: str = "push"  # or "on-request": the device asks for it (EnOS getversion)
    force: bool = False  # skip the driver's check that the device can take updates


class ClaimLost(Conflict):
    """Another hub instance delivers the update now (see ``UpdateService.claim``)."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """An update this hub delivers now, and which hub did before (None: none did)."""

    update: UpdateView
    previous: str | None

    def fresh_to(self, owner: str) -> bool:
        """Whether ``owner`` did not deliver it so far: it may not know what was sent."""
        return self.previous != owner


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What ``create_many`` did: each request's index with its update or its refusal.

    In the transaction hook the updates are as created; in what ``create_many``
    returns, as their drivers left them (failed if a start raised).
    """

    created: builtins.list[tuple[int, UpdateView]]
    refused: builtins.list[tuple[int, ServiceError]]


# Runs inside create_many's transaction before it commits; raising rolls the batch back.
BatchHook = Callable[[AsyncSession, BatchOutcome], Awaitable[None]]
# New updates announced between yields to the event loop.
ANNOUNCE_SLICE = 50
# New updates handed to a driver's batch starter at once: few large batches hand a
# fleet over before its devices' first answers compete for the database.
START_SLICE = 1000
#: Requests in one API batch (``POST /updates/batch``) at most.
MAX_BATCH = 10_000

# Raises a ServiceError when the device cannot take the update (skipped when forced).
CreateCheck = Callable[[DeviceView, "UpdateRequest"], None]
# Starts delivering a new update to its device; what it raises fails the update.
Starter = Callable[[UpdateView], Awaitable[None]]
# Starts many new updates of one dialect at once: the error of each one it could not
# start, by update id. Raising means it started none; they are then started one by one.
BatchStarter = Callable[[Sequence[UpdateView]], Awaitable[dict[int, Exception]]]
# Re-delivers an update that was asked for again while it runs.
RepeatHandler = Callable[[UpdateView], Awaitable[None]]
#: Why a package may not be sent to devices at all (None: it may), e.g. unsigned.
PackageCheck = Callable[[PackageView], str | None]
# The failure reason of an update whose deadline passed.
TimeoutReason = Callable[[UpdateView], str]


MAX_PAGE = 1000
_IN_CHUNK = 500  # ids per IN (...) of the batched driver writes
# past any real table; keeps the number within every database's integer range
MAX_OFFSET = 2**31 - 1


class UpdateService:
    def __init__(self, db: Database, bus: EventBus, *, default_timeout_s: float = 3600.0) -> None:
        self.db = db
        self.bus = bus
        self.default_timeout_s = check_timeout(default_timeout_s)
        # Per-dialect hooks that drivers register.
        self._create_checks: dict[str, CreateCheck] = {}
        #: Refuses packages that must not start an update (``--require-signed``).
        self.package_check: PackageCheck | None = None
        self._repeat_handlers: dict[str, RepeatHandler] = {}
        self._starters: dict[str, Starter] = {}
        self._batch_starters: dict[str, BatchStarter] = {}
        self._timeout_reasons: dict[str, TimeoutReason] = {}
        # One writer at a time within this hub: state checks and the writes that
        # follow them must not interleave (SQLite has no SELECT ... FOR UPDATE).
        self._write = asyncio.Lock()
        self._changed = asyncio.Event()  # wakes the sweeper when a deadline moves
        # When the sleeping sweeper wakes next (None: it is not sleeping). Activity
        # only pushes deadlines later, so only an earlier one needs to wake it.
        self._wake_at: datetime | None = None
        # Transitions waiting for the next group commit, and the task committing them.
        self._steps: GroupCommit[_Step, tuple[UpdateView, TransitionView]] = GroupCommit(
            self._write_steps, "transitions", log
        )
        self._late: set[asyncio.Task[Any]] = set()
        # called with each device whose update succeeded, once that is committed
        self._installed_hooks: builtins.list[Callable[[str], object]] = []
        # (device, kind) -> its unfinished update; a connect wave's lookups share queries
        self._active_reads: ReadBatch[tuple[str, str], UpdateView] = ReadBatch(self._read_active)

    # -- queries --------------------------------------------------------------

    async def get(self, update_id: int, *, with_transitions: bool = True) -> UpdateView:
        _check_id(update_id)
        async with self.db.session() as s:
            row = await s.get(Update, update_id)
            if row is None:
                raise NotFound(f"update {update_id} does not exist")
            transitions = await _transitions(s, row.id) if with_transitions else None
            return UpdateView.of(row, transitions)

    async def list(
        self,
        *,
        device: str | None = None,
        state: str | None = None,
        active: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[UpdateView]:
        """Newest first: ``limit`` of them (at most 1000) after skipping ``offset``."""
        if not 1 <= limit <= MAX_PAGE:
            raise Invalid(f"limit must be between 1 and {MAX_PAGE}")
        if not 0 <= offset <= MAX_OFFSET:
            raise Invalid(f"offset must be between 0 and {MAX_OFFSET}")
        query = select(Update).order_by(Update.id.desc()).limit(limit).offset(offset)
        if device is not None:
            # The device of that name now, not a deleted one that had the same name.
            query = query.join(Device).where(Device.name == device)
        if state is not None:
            query = query.where(Update.state == parse_state(state).value)
        if active is True:
            query = query.where(Update.state.not_in(TERMINAL_STATES))
        elif active is False:
            query = query.where(Update.state.in_(TERMINAL_STATES))
        async with self.db.session() as s:
            if device is not None and (
                await s.scalar(select(Device.id).where(Device.name == device)) is None
            ):
                raise NotFound(f"device {device!r} does not exist")
            return [UpdateView.of(row) for row in (await s.scalars(query)).all()]

    async def count_by_state(self) -> dict[str, int]:
        """How many updates are in each state (those with none are left out)."""
        query = select(Update.state, func.count()).group_by(Update.state)
        async with self.db.session() as s:
            return {state: count for state, count in (await s.execute(query)).all()}

    async def each_active(
        self, dialect: str, *, state: UpdateState | None = None, page: int = MAX_PAGE
    ) -> AsyncIterator[builtins.list[UpdateView]]:
        """Every unfinished update of a ``dialect`` (only those in ``state`` if
        given), oldest first, ``page`` at a time: what its driver takes back when
        the hub starts, however many there are."""
        after = 0
        while True:
            query = select(Update).where(Update.dialect == dialect, Update.id > after)
            if state is None:
                query = query.where(Update.state.not_in(TERMINAL_STATES))
            else:
                query = query.where(Update.state == state.value)
            async with self.db.session() as s:
                rows = (await s.scalars(query.order_by(Update.id).limit(page))).all()
                views = [UpdateView.of(row) for row in rows]
            if views:
                yield views
            if len(views) < page:
                return
            after = views[-1].id

    async def active_for(self, device: str, kind: str = "firmware") -> UpdateView | None:
        """The device's unfinished update of ``kind`` (what a driver must deliver)."""
        return await self._active_reads.get((device, kind))

    async def _read_active(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], UpdateView]:
        wanted = set(keys)
        found: dict[tuple[str, str], UpdateView] = {}
        async with self.db.session() as s:
            rows = await s.execute(
                select(Update, Device.name)
                .join(Device)
                .where(
                    Device.name.in_({device for device, _ in keys}),
                    Update.kind.in_({kind for _, kind in keys}),
                    Update.state.not_in(TERMINAL_STATES),
                )
            )
            for row, name in rows:
                key = (name, row.kind)
                if key in wanted and key not in found:
                    found[key] = UpdateView.of(row)
        return found

    # -- driver hooks ---------------------------------------------------------

    def add_create_check(self, dialect: str, check: CreateCheck) -> None:
        """Run ``check`` before an update for a ``dialect`` device is written, unless forced."""
        self._create_checks[dialect] = check

    def set_starter(self, dialect: str, start: Starter) -> None:
        """``start`` delivers each new update of a ``dialect`` device (its driver's).

        Called once the update is committed and announced; what it raises fails
        the update (``start_failed``). Without a starter an update stays pending.
        """
        self._starters[dialect] = start

    def set_batch_starter(self, dialect: str, start_many: BatchStarter) -> None:
        """``start_many`` starts the new updates of a ``dialect`` that ``create_many``
        made, a slice at a time, as the starter would each (its driver's, sharing
        reads and writes); an update whose error it returns fails (``start_failed``)."""
        self._batch_starters[dialect] = start_many

    async def _start(self, update: UpdateView) -> UpdateView:
        """Hand a new update to its driver; the update as it is, failed if that raised."""
        start = self._starters.get(update.dialect)
        if start is None:
            return update
        try:
            await start(update)
        except Exception as exc:
            return await self._start_failed(update, exc)
        return update

    async def _start_failed(self, update: UpdateView, exc: Exception) -> UpdateView:
        log.error(
            "the %s driver could not start update %d",
            update.dialect,
            update.id,
            exc_info=exc,
            extra=update_fields(update.id, update.device, update.dialect),
        )
        return await self.fail_start(
            update.id, f"{type(exc).__name__}: {exc}", dialect=update.dialect
        )

    async def _start_slice(self, views: Sequence[UpdateView]) -> builtins.list[UpdateView]:
        """Hand new updates to their drivers, each dialect's at once where its driver
        can; each update as it is, failed if its start raised."""
        started: dict[int, UpdateView] = {view.id: view for view in views}
        by_dialect: dict[str, builtins.list[UpdateView]] = {}
        for view in views:
            by_dialect.setdefault(view.dialect, []).append(view)
        for dialect, group in by_dialect.items():
            start_many = self._batch_starters.get(dialect)
            errors: dict[int, Exception] | None = None
            if start_many is not None:
                try:
                    errors = await start_many(group)
                except Exception:
                    log.exception(
                        "the %s driver could not start %d updates at once; one by one",
                        dialect,
                        len(group),
                    )
            if errors is None:
                for view in group:
                    started[view.id] = await self._start(view)
                continue
            for view in group:
                if (exc := errors.get(view.id)) is not None:
                    started[view.id] = await self._start_failed(view, exc)
        return [started[view.id] for view in views]

    def on_repeat(self, dialect: str, handler: RepeatHandler) -> None:
        """Asking again for the update a ``dialect`` device runs re-delivers it via ``handler``.

        ``create`` then returns the running update instead of refusing with 409.
        """
        self._repeat_handlers[dialect] = handler

    def set_timeout_reason(self, dialect: str, reason: TimeoutReason) -> None:
        """The failure reason for expired updates of ``dialect`` devices."""
        self._timeout_reasons[dialect] = reason

    async def _repeated(self, request: UpdateRequest) -> UpdateView | None:
        """The running update ``request`` asks for again, if its driver re-delivers it."""
        if request.replace or not self._repeat_handlers:
            return None
        async with self.db.session() as s:
            found = await s.scalar(
                select(Update)
                .join(Device)
                .where(
                    Device.name == request.device,
                    Update.title == request.title,
                    Update.version == request.version,
                    Update.state.not_in(TERMINAL_STATES),
                )
            )
        if found is None or found.dialect not in self._repeat_handlers:
            return None
        view = UpdateView.of(found)
        await self._repeat_handlers[view.dialect](view)
        return view

    # -- changes --------------------------------------------------------------

    async def create(self, request: UpdateRequest, *, source: str = "api") -> UpdateView:
        timeout_s = check_timeout(
            self.default_timeout_s if request.timeout_s is None else request.timeout_s
        )
        if request.mode not in UPDATE_MODES:
            known = ", ".join(UPDATE_MODES)
            raise Invalid(f"unknown update mode {request.mode!r} (known: {known})")
        repeated = await self._repeated(request)
        if repeated is not None:
            return repeated
        events: list[Event] = []
        async with self._write, self.db.session() as s:
            device = await s.scalar(select(Device).where(Device.name == request.device))
            if device is None:
                raise NotFound(f"device {request.device!r} does not exist")
            package = await s.scalar(
                select(FirmwarePackage).where(
                    FirmwarePackage.title == request.title,
                    FirmwarePackage.version == request.version,
                )
            )
            if package is None:
                raise NotFound(f"no firmware package {request.title!r} version {request.version!r}")
            self._check_fits(device, package, request)
            now = utcnow()
            current = await s.scalar(
                select(Update).where(
                    Update.device_id == device.id,
                    Update.kind == package.kind,
                    Update.state.not_in(TERMINAL_STATES),
                )
            )
            if current is not None:
                # An update made for the device's type yields to the device's own one.
                from_type = bool((current.driver_state or {}).get(TYPE_ORIGIN_KEY))
                if not request.replace and not from_type:
                    raise Conflict(
                        f"device {device.name!r} already has active {package.kind} update "
                        f"{current.id} ({current.title} {current.version}, {current.state}); "
                        "cancel it or ask to replace it"
                    )
                step = _apply(
                    current,
                    UpdateState.CANCELED,
                    now=now,
                    reason="replaced by a newer update",
                    source=source,
                )
                s.add(step)
                await s.flush()  # the partial unique index must see it finished
                events.append(UpdateTransitioned(UpdateView.of(current), TransitionView.of(step)))
            row = _new_row(device, package, request, timeout_s, now)
            try:
                s.add(row)
                await s.flush()
                s.add(
                    UpdateTransition(
                        update_id=row.id,
                        from_state=None,
                        to_state=row.state,
                        source=source,
                        at=now,
                    )
                )
                await s.commit()
            except IntegrityError:
                raise Conflict(
                    f"device {device.name!r} got another {package.kind} update meanwhile"
                ) from None
            created = UpdateView.of(row)
        self._deadline_moved(created.deadline_at)
        await self._announce(events)  # the replaced update's end first
        await self._announce([UpdateCreated(created)])
        return await self._start(created)

    async def create_many(
        self,
        requests: Sequence[UpdateRequest],
        *,
        source: str = "api",
        in_transaction: BatchHook | None = None,
    ) -> BatchOutcome:
        """Create updates for many devices in one transaction, then hand them to the drivers.

        The rules are ``create``'s (the package must exist and fit the device's
        type, the driver's check, one active update per device and kind), but a
        request that breaks one is refused alone while the others go on.
        ``replace`` and re-delivery of a running update are not offered here:
        a device with an active update of the kind is refused. ``in_transaction``
        lets the caller write its own rows in the same transaction.
        """
        refused: builtins.list[tuple[int, ServiceError]] = []
        valid: builtins.list[tuple[int, UpdateRequest, float]] = []
        for index, request in enumerate(requests):
            try:
                timeout_s = check_timeout(
                    self.default_timeout_s if request.timeout_s is None else request.timeout_s
                )
                if request.mode not in UPDATE_MODES:
                    known = ", ".join(UPDATE_MODES)
                    raise Invalid(f"unknown update mode {request.mode!r} (known: {known})")
                if request.replace:
                    raise Invalid("a batch of updates does not replace running ones")
            except ServiceError as exc:
                refused.append((index, exc))
                continue
            valid.append((index, request, timeout_s))
        created: builtins.list[tuple[int, UpdateView]] = []
        async with self._write, self.db.session() as s:
            names = {request.device for _, request, _ in valid}
            devices = {
                d.name: d
                for d in (await s.scalars(select(Device).where(Device.name.in_(names)))).all()
            }
            packages: dict[tuple[str, str], FirmwarePackage | None] = {}
            for key in {(r.title, r.version) for _, r, _ in valid}:
                packages[key] = await s.scalar(
                    select(FirmwarePackage).where(
                        FirmwarePackage.title == key[0], FirmwarePackage.version == key[1]
                    )
                )
            active: dict[tuple[int | None, str], Update | None] = {
                (row.device_id, row.kind): row
                for row in (
                    await s.scalars(
                        select(Update).where(
                            Update.device_id.in_([d.id for d in devices.values()]),
                            Update.state.not_in(TERMINAL_STATES),
                        )
                    )
                ).all()
            }
            now = utcnow()
            rows: builtins.list[tuple[int, dict[str, Any]]] = []
            replaced: builtins.list[Event] = []
            for index, request, timeout_s in valid:
                try:
                    row = self._batch_row(request, timeout_s, devices, packages, now)
                    taken = (row["device_id"], row["kind"])
                    if taken in active:
                        replaced += self._yield_to(
                            s, row["device_name"], row["kind"], active[taken], now, source
                        )
                except ServiceError as exc:
                    refused.append((index, exc))
                    continue
                active[taken] = None  # taken by this batch
                rows.append((index, row))
            await s.flush()  # the partial unique index must see replaced updates finished
            try:
                # Core executemany, then the new rows read back by device (each has one
                # active update of a kind): the ORM inserts row by row to learn the ids
                for first in range(0, len(rows), _IN_CHUNK):
                    await s.execute(
                        sql_insert(_UPDATES), [row for _, row in rows[first : first + _IN_CHUNK]]
                    )
                new: dict[tuple[int, str], Any] = {}
                device_ids = sorted({row["device_id"] for _, row in rows})
                for first in range(0, len(device_ids), _IN_CHUNK):
                    found = await s.execute(
                        select(_UPDATES).where(
                            _UPDATES.c.device_id.in_(device_ids[first : first + _IN_CHUNK]),
                            _UPDATES.c.state.not_in(TERMINAL_STATES),
                        )
                    )
                    new.update(((r["device_id"], r["kind"]), r) for r in found.mappings())
                created = []
                for index, row in rows:
                    stored = new[row["device_id"], row["kind"]]
                    created.append((index, UpdateView.of(cast(Update, SimpleNamespace(**stored)))))
                if created:
                    await s.execute(
                        sql_insert(_TRANSITIONS),
                        [
                            {
                                "update_id": view.id,
                                "from_state": None,
                                "to_state": view.state,
                                "progress": None,
                                "reason": None,
                                "code": None,
                                "source": source,
                                "at": now,
                            }
                            for _, view in created
                        ],
                    )
                outcome = BatchOutcome(created, sorted(refused, key=lambda pair: pair[0]))
                if in_transaction is not None:
                    await in_transaction(s, outcome)
                await s.commit()
            except IntegrityError:
                # Another hub instance gave one of these devices an update meanwhile.
                raise Conflict("a device of the batch got another update meanwhile") from None
        if created:
            self._deadline_moved(min(view.deadline_at or now for _, view in created))
        await self._announce(replaced)  # the replaced updates' ends first
        started: builtins.list[tuple[int, UpdateView]] = []
        for first in range(0, len(created), START_SLICE):
            part = created[first : first + START_SLICE]
            for n, (_, view) in enumerate(part, 1):
                await self._announce([UpdateCreated(view)])
                if n % ANNOUNCE_SLICE == 0:
                    await asyncio.sleep(0)  # observers take turns with the rest of the hub
            views = await self._start_slice([view for _, view in part])
            started += zip([index for index, _ in part], views, strict=True)
        return BatchOutcome(started, outcome.refused)

    def _check_fits(self, device: Device, package: FirmwarePackage, request: UpdateRequest) -> None:
        """Raise the ServiceError refusing ``package`` for ``device``: the package check
        (signed updates), the device type, and the dialect's own check unless forced."""
        if self.package_check is not None:
            refusal = self.package_check(PackageView.of(package))
            if refusal is not None:
                log.warning("refused an update of %s: %s", device.name, refusal)
                raise Conflict(refusal)
        if package.device_type and device.device_type not in (None, package.device_type):
            raise Invalid(
                f"package {package.title} {package.version} is for device type "
                f"{package.device_type!r}, device {device.name!r} is {device.device_type!r}"
            )
        check = self._create_checks.get(device.dialect)
        if check is not None and not request.force:
            check(DeviceView.of(device), request)

    def _batch_row(
        self,
        request: UpdateRequest,
        timeout_s: float,
        devices: dict[str, Device],
        packages: dict[tuple[str, str], FirmwarePackage | None],
        now: datetime,
    ) -> dict[str, Any]:
        """The new update row's values for one request of a batch, or the ServiceError
        refusing it."""
        device = devices.get(request.device)
        if device is None:
            raise NotFound(f"device {request.device!r} does not exist")
        package = packages.get((request.title, request.version))
        if package is None:
            raise NotFound(f"no firmware package {request.title!r} version {request.version!r}")
        self._check_fits(device, package, request)
        return _new_values(device, package, request, timeout_s, now)

    @staticmethod
    def _yield_to(
        s: AsyncSession,
        device_name: str,
        kind: str,
        current: Update | None,
        now: datetime,
        source: str,
    ) -> builtins.list[Event]:
        """Cancel ``current`` for ``new`` if it came from a type assignment, as ``create``
        does; else (or when this batch already has one for the device) a Conflict."""
        if current is None:
            raise Conflict(f"device {device_name!r} is in this batch twice")
        if not (current.driver_state or {}).get(TYPE_ORIGIN_KEY):
            raise Conflict(
                f"device {device_name!r} already has active {kind} update "
                f"{current.id} ({current.title} {current.version}, {current.state})"
            )
        step = _apply(
            current,
            UpdateState.CANCELED,
            now=now,
            reason="replaced by a newer update",
            source=source,
        )
        s.add(step)
        return [UpdateTransitioned(UpdateView.of(current), TransitionView.of(step))]

    async def set_driver_state(
        self, update_id: int, state: dict[str, Any], *, claimed_by: str | None = None
    ) -> UpdateView:
        """Replace the driver's bookkeeping of an update (no transition, no event).

        ``claimed_by``: only while that hub instance holds the update's claim
        (``claim``), else ClaimLost; what a driver records before it sends.
        """
        return await self._edit_driver_state(update_id, lambda _: dict(state), claimed_by)

    async def merge_driver_state(
        self, update_id: int, values: dict[str, Any], *, claimed_by: str | None = None
    ) -> UpdateView:
        """Set ``values`` in the driver's bookkeeping of an update, keeping its other keys;
        ``claimed_by`` as for ``set_driver_state``."""
        return await self._edit_driver_state(update_id, lambda old: {**old, **values}, claimed_by)

    async def _edit_driver_state(
        self,
        update_id: int,
        edit: Callable[[dict[str, Any]], dict[str, Any]],
        claimed_by: str | None,
    ) -> UpdateView:
        _check_id(update_id)
        async with self._write, self.db.session() as s:
            query = select(Update).where(Update.id == update_id)
            if claimed_by is not None:
                # the row lock makes a takeover wait for this write, then see it
                query = query.with_for_update()
            row = await s.scalar(query)
            if row is None:
                raise NotFound(f"update {update_id} does not exist")
            if claimed_by is not None and row.claimed_by != claimed_by:
                raise ClaimLost(
                    f"update {update_id} is delivered by hub {row.claimed_by or 'none'}, "
                    f"not {claimed_by}"
                )
            row.driver_state = edit(row.driver_state or {})
            await s.commit()
            return UpdateView.of(row)

    async def set_driver_states(
        self, states: dict[int, dict[str, Any]], *, claimed_by: str, merge: bool = False
    ) -> builtins.list[UpdateView]:
        """``set_driver_state`` (``merge_driver_state`` with ``merge``) for many updates
        in one transaction: each is written only while ``claimed_by`` holds its claim.
        Returns those written; the others (claim lost, deleted) are left as they were."""
        ids = sorted(update_id for update_id in states if is_row_id(update_id))
        written: builtins.list[UpdateView] = []
        async with self._write, self.db.session() as s:
            for first in range(0, len(ids), _IN_CHUNK):
                rows = await s.scalars(
                    select(Update)
                    .where(Update.id.in_(ids[first : first + _IN_CHUNK]))
                    .order_by(Update.id)
                    .with_for_update()  # a takeover waits for this write, then sees it
                )
                for row in rows:
                    if row.claimed_by == claimed_by:
                        old = (row.driver_state or {}) if merge else {}
                        row.driver_state = {**old, **states[row.id]}
                        written.append(UpdateView.of(row))
            await s.commit()
        return written

    async def claim_new(self, update_ids: Sequence[int], owner: str) -> builtins.list[Claimed]:
        """``claim`` without take-over for many updates, in one transaction: those no
        hub claimed yet (or ``owner`` did) and that have not ended; in id order."""
        ids = sorted({update_id for update_id in update_ids if is_row_id(update_id)})
        claimed: builtins.list[Claimed] = []
        async with self.db.session() as s:
            for first in range(0, len(ids), _IN_CHUNK):
                chunk = ids[first : first + _IN_CHUNK]
                open_ = Update.state.not_in(TERMINAL_STATES)
                found = await s.execute(
                    select(Update.id, Update.claimed_by).where(Update.id.in_(chunk), open_)
                )
                held: dict[int, str | None] = {row_id: holder for row_id, holder in found.all()}
                free = [update_id for update_id, holder in held.items() if holder is None]
                if free:
                    # the same conditional UPDATE as claim's: of two hubs racing, one wins
                    await s.execute(
                        sql_update(Update)
                        .where(Update.id.in_(free), open_, Update.claimed_by.is_(None))
                        .values(claimed_by=owner)
                        .execution_options(synchronize_session=False)
                    )
                rows = await s.scalars(
                    select(Update)
                    .where(Update.id.in_(chunk), Update.claimed_by == owner, open_)
                    .order_by(Update.id)
                    .execution_options(populate_existing=True)
                )
                claimed += [Claimed(UpdateView.of(row), held.get(row.id)) for row in rows]
            await s.commit()
        return claimed

    async def claim(self, update_id: int, owner: str, *, take_over: bool = False) -> Claimed | None:
        """Make hub instance ``owner`` the one that sends the update's commands.

        Without ``take_over`` only an update no hub claimed yet (or ``owner``
        did) is taken: the hub that created or queued it sends it unless another
        already does. With ``take_over`` (its device is connected to ``owner``
        now) it is taken from whichever hub had it. One conditional UPDATE on
        the holder just read decides, so of two hubs racing for an update one
        wins. None: the update ended (or never was), or another hub holds it.
        """
        if not is_row_id(update_id):
            return None
        async with self.db.session() as s:
            row = await s.scalar(
                select(Update).where(Update.id == update_id, Update.state.not_in(TERMINAL_STATES))
            )
            if row is None:
                return None
            held: str | None = row.claimed_by
            if held == owner:
                return Claimed(UpdateView.of(row), held)  # a reconnect: nothing to write
            if held is not None and not take_over:
                return None
            result = await s.execute(
                sql_update(Update)
                .where(
                    Update.id == update_id,
                    Update.state.not_in(TERMINAL_STATES),
                    Update.claimed_by.is_(None) if held is None else Update.claimed_by == held,
                )
                .values(claimed_by=owner)
                .execution_options(synchronize_session=False)
            )
            assert isinstance(result, CursorResult)
            if result.rowcount != 1:
                await s.rollback()
                return None  # another hub took it (or it ended) meanwhile
            row = await s.scalar(
                select(Update)
                .where(Update.id == update_id)
                .execution_options(populate_existing=True)
            )
            await s.commit()
        assert row is not None
        if held is not None:
            log.info(
                "update %d: hub %s delivers it now, taken over from %s",
                update_id,
                owner,
                held,
                extra=update_fields(row.id, row.device_name, row.dialect),
            )
        return Claimed(UpdateView.of(row), held)

    def on_installed(self, hook: Callable[[str], object]) -> None:
        """Call ``hook`` with a device's name once an update of it has succeeded
        (what the device service caches about the device is stale then)."""
        self._installed_hooks.append(hook)

    async def transition(
        self,
        update_id: int,
        state: UpdateState | str,
        *,
        progress: int | None = None,
        reason: str | None = None,
        code: str | None = None,
        source: str = "api",
    ) -> UpdateView:
        """Move an update to ``state``; the same state again records progress only.

        Returns once the change is committed and announced. Concurrent calls are
        committed together (group commit): one transaction for all transitions
        that arrived while the previous one was being written.
        """
        target = state if isinstance(state, UpdateState) else parse_state(state)
        if progress is not None and not 0 <= progress <= 100:
            raise Invalid("progress must be between 0 and 100")
        _check_id(update_id)
        done = self._steps.submit(_Step(update_id, target, progress, reason, code, source))
        try:
            # shielded: a caller that gives up still gets its committed change announced
            view, step_view = await asyncio.shield(done)
        except asyncio.CancelledError:
            done.add_done_callback(self._announce_late)
            raise
        self._deadline_moved(view.deadline_at)
        await self._announce([UpdateTransitioned(view, step_view)])
        return view

    async def transition_many(
        self, update_ids: Sequence[int], state: UpdateState, *, source: str
    ) -> builtins.list[UpdateView | Exception]:
        """Move each of ``update_ids`` to ``state``; each one's outcome, in order.

        Submitted together, so that the group commit writes them in one
        transaction (a driver moving a batch it has just sent).
        """
        outcomes = await asyncio.gather(
            *(self.transition(update_id, state, source=source) for update_id in update_ids),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if not isinstance(outcome, (UpdateView, Exception)):
                raise outcome  # cancelled: not an outcome of the update
        return cast(builtins.list[UpdateView | Exception], outcomes)

    async def _write_steps(
        self, batch: builtins.list[_Step]
    ) -> builtins.list[tuple[UpdateView, TransitionView] | Exception]:
        """Apply ``batch`` in one transaction: each step's outcome, once committed.

        Plain statements, not ORM objects: one SELECT of the rows, an executemany
        UPDATE of those whose state changed, one of those with progress only, and
        one INSERT of audit rows, whatever the batch size.
        """
        outcomes: builtins.list[tuple[UpdateView, TransitionView] | Exception] = []
        table = _UPDATES
        async with self._write, self.db.session() as s:
            ids = sorted({step.update_id for step in batch})
            found = await s.execute(
                select(table).where(table.c.id.in_(ids)).order_by(table.c.id).with_for_update()
            )
            # plain rows with the model's attribute names, so _apply and the views take them
            rows = {r["id"]: cast(Update, SimpleNamespace(**r)) for r in found.mappings()}
            changed: dict[int, Update] = {}
            moved: set[int] = set()  # rows whose state changed, not only their progress
            audits: builtins.list[dict[str, Any]] = []
            for step in batch:
                row = rows.get(step.update_id)
                if row is None:
                    outcomes.append(NotFound(f"update {step.update_id} does not exist"))
                    continue
                try:
                    view, step_view, audit = _step(row, step)
                except Conflict as exc:
                    outcomes.append(exc)
                    continue
                changed[row.id] = row
                if audit is not None:
                    audits.append(audit)
                    moved.add(row.id)
                outcomes.append((view, step_view))
            for statement, columns, rows_of in (
                (_UPDATE_ROW, _MUTABLE, [r for r in changed.values() if r.id in moved]),
                (_UPDATE_PROGRESS, _PROGRESS, [r for r in changed.values() if r.id not in moved]),
            ):
                if rows_of:
                    await s.execute(
                        statement,
                        [
                            {"row_id": row.id, **{f"v_{c}": getattr(row, c) for c in columns}}
                            for row in rows_of
                        ],
                    )
            if audits:
                await s.execute(sql_insert(_TRANSITIONS), audits)
            installed = [r for r in changed.values() if r.id in moved and _installed(r)]
            await _record_installed(s, installed)
            await s.commit()
        for row in installed:
            for hook in self._installed_hooks:
                hook(row.device_name)
        return outcomes

    def _announce_late(self, done: asyncio.Future[tuple[UpdateView, TransitionView]]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        view, step_view = done.result()
        self._deadline_moved(view.deadline_at)
        task = asyncio.get_running_loop().create_task(
            self._announce([UpdateTransitioned(view, step_view)])
        )
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    def _deadline_moved(self, deadline: datetime | None) -> None:
        """Wake the sweeper if ``deadline`` comes before it would wake anyway."""
        if deadline is None:
            return  # finished: a sweep at the old deadline finds nothing, harmlessly
        if self._wake_at is None or deadline < self._wake_at:
            self._changed.set()

    async def fail_start(self, update_id: int, error: str, *, dialect: str) -> UpdateView:
        """Fail an update whose driver could not start it, with the driver's error.

        Starting is the driver's starter (``set_starter``) or a driver's own
        queue; either way a start that raised ends the update here
        instead of leaving it to the timeout. An update that ended meanwhile
        is returned as it is.
        """
        try:
            return await self.transition(
                update_id,
                UpdateState.FAILED,
                reason=f"the {dialect} driver could not start the update: {error}",
                code=START_FAILED_CODE,
                source="hub",
            )
        except Conflict:
            return await self.get(update_id, with_transitions=False)

    async def _announce(self, events: builtins.list[Event]) -> None:
        """Publish committed changes to the observers (the bus logs their errors);
        every update that ends passes here and is logged."""
        for event in events:
            if isinstance(event, UpdateTransitioned) and _ends(event.transition):
                self._log_ended(event.update)
            await self.bus.publish(event)

    def _log_ended(self, update: UpdateView) -> None:
        ended = update.finished_at or update.updated_at
        log.log(
            logging.WARNING if update.state == UpdateState.FAILED else logging.INFO,
            "update %d ended: device=%s dialect=%s %s %s %s -> %s state=%s duration=%.1fs "
            "reason=%s",
            update.id,
            update.device,
            update.dialect,
            update.kind,
            update.title,
            update.from_version or "none",
            update.version,
            update.state,
            (ended - update.created_at).total_seconds(),
            update.reason or "-",
            extra=update_fields(update.id, update.device, update.dialect),
        )

    async def cancel(
        self, update_id: int, *, reason: str | None = None, source: str = "api"
    ) -> UpdateView:
        return await self.transition(
            update_id, UpdateState.CANCELED, reason=reason or "canceled", source=source
        )

    async def expire_overdue(self, now: datetime | None = None) -> builtins.list[UpdateView]:
        """Fail every unfinished update whose deadline has passed."""
        now = now or utcnow()
        async with self.db.session() as s:
            overdue = (
                await s.execute(
                    select(Update.id, Update.state, Update.timeout_s, Update.dialect).where(
                        Update.state.not_in(TERMINAL_STATES), Update.deadline_at < now
                    )
                )
            ).all()
        expired = []
        for update_id, state, timeout_s, dialect in overdue:
            reason = f"timed out: no progress for {timeout_s:g} s while {state}"
            try:
                if (explain := self._timeout_reasons.get(dialect)) is not None:
                    reason = explain(await self.get(update_id, with_transitions=False))
                expired.append(
                    await self.transition(
                        update_id,
                        UpdateState.FAILED,
                        reason=reason,
                        code=TIMEOUT_CODE,
                        source="timeout",
                    )
                )
            except (Conflict, NotFound):
                continue  # finished or deleted since the query: nothing to expire
            log.warning("update %d timed out in state %s", update_id, state)
        return expired

    async def next_deadline(self) -> datetime | None:
        async with self.db.session() as s:
            return await s.scalar(
                select(func.min(Update.deadline_at)).where(Update.state.not_in(TERMINAL_STATES))
            )

    async def run_sweeper(self, max_interval_s: float = 30.0) -> None:
        """Fail overdue updates as their deadlines pass, until cancelled.

        Sleeps until the earliest deadline (at most ``max_interval_s``, in case
        another hub instance wrote it); any change here wakes it to re-plan.
        """
        while True:
            self._changed.clear()
            try:
                await self.expire_overdue()
                deadline = await self.next_deadline()
            except Exception:
                log.exception("timeout sweep failed; retrying")
                deadline = None
            delay = max_interval_s
            if deadline is not None:
                delay = min(delay, max(0.0, (deadline - utcnow()).total_seconds()) + 0.01)
            self._wake_at = utcnow() + timedelta(seconds=delay)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), delay)
            finally:
                self._wake_at = None


_UPDATES = cast(Table, Update.__table__)
_DEVICES = cast(Table, Device.__table__)
# a package kind -> the device columns saying what of that kind it runs
_RUNS_COLUMNS = {
    "firmware": ("current_fw_title", "current_fw_version"),
    "software": ("current_sw_title", "current_sw_version"),
}
_TRANSITIONS = cast(Table, UpdateTransition.__table__)
# what a transition or progress changes in an update row
_MUTABLE = ("state", "progress", "reason", "code", "updated_at", "deadline_at", "finished_at")
_AUDIT_COLUMNS = (
    "update_id",
    "from_state",
    "to_state",
    "progress",
    "reason",
    "code",
    "source",
    "at",
)
# what progress within a state changes: fewer values to bind per row
_PROGRESS = ("progress", "updated_at", "deadline_at")
_UPDATE_ROW = (
    sql_update(_UPDATES)
    .where(_UPDATES.c.id == bindparam("row_id"))
    .values({c: bindparam(f"v_{c}") for c in _MUTABLE})
)
_UPDATE_PROGRESS = (
    sql_update(_UPDATES)
    .where(_UPDATES.c.id == bindparam("row_id"))
    .values({c: bindparam(f"v_{c}") for c in _PROGRESS})
)


@dataclass(slots=True)
class _Step:
    """One transition waiting for the group commit."""

    update_id: int
    target: UpdateState
    progress: int | None
    reason: str | None
    code: str | None
    source: str


def _step(row: Update, step: _Step) -> tuple[UpdateView, TransitionView, dict[str, Any] | None]:
    """Apply ``step`` to ``row``: its view after, the step, and the audit row's values for a
    change of state (None for progress within a state); Conflict if it may not."""
    now = utcnow()
    current = UpdateState(row.state)
    audit: dict[str, Any] | None = None
    if step.target == current and not is_terminal(current):
        # progress within a state: the row only, no audit row
        row.progress = step.progress if step.progress is not None else row.progress
        row.updated_at = now
        row.deadline_at = now + timedelta(seconds=row.timeout_s)
        step_view = TransitionView(
            from_state=current.value,
            to_state=current.value,
            progress=row.progress,
            reason=None,
            code=None,
            source=step.source,
            at=now,
        )
    else:
        try:
            check_transition(current, step.target)
        except InvalidTransition as exc:
            raise Conflict(f"update {step.update_id}: {exc}") from None
        made = _apply(
            row,
            step.target,
            now=now,
            progress=step.progress,
            reason=step.reason,
            code=step.code,
            source=step.source,
        )
        audit = {name: getattr(made, name) for name in _AUDIT_COLUMNS}
        step_view = TransitionView.of(made)
    return UpdateView.of(row), step_view, audit


def _installed(row: Update) -> bool:
    """Whether ``row`` has just succeeded on a device that still exists."""
    return row.state == UpdateState.SUCCEEDED.value and row.device_id is not None


async def _record_installed(s: AsyncSession, rows: Sequence[Update]) -> None:
    """Store each succeeded update's title and version as what its device runs.

    In the transaction that records the success: a reader who sees the update
    succeeded sees the device on its version, and a hub that dies right after
    the commit cannot leave the device on the old one.
    """
    for kind, (title, version) in _RUNS_COLUMNS.items():
        params = [
            {"row_id": r.device_id, "v_title": r.title, "v_version": r.version}
            for r in sorted(rows, key=lambda r: r.device_id or 0)
            if r.kind == kind
        ]
        if params:
            await s.execute(
                sql_update(_DEVICES)
                .where(_DEVICES.c.id == bindparam("row_id"))
                .values({title: bindparam("v_title"), version: bindparam("v_version")}),
                params,
            )


def _ends(step: TransitionView) -> bool:
    """Whether ``step`` is the change that finished its update (not progress within a state)."""
    return step.from_state != step.to_state and is_terminal(UpdateState(step.to_state))


def _check_id(update_id: int) -> None:
    # An id no database row can have: not found, rather than an overflow in the driver.
    if not is_row_id(update_id):
        raise NotFound(f"update {update_id} does not exist")


def _apply(
    row: Update,
    target: UpdateState,
    *,
    now: datetime,
    progress: int | None = None,
    reason: str | None = None,
    code: str | None = None,
    source: str,
) -> UpdateTransition:
    """Change ``row`` to ``target`` and return the audit row for it."""
    step = UpdateTransition(
        update_id=row.id,
        from_state=row.state,
        to_state=target.value,
        progress=progress,
        reason=reason,
        code=code,
        source=source,
        at=now,
    )
    row.state = target.value
    row.updated_at = now
    if progress is not None:
        row.progress = progress
    if target is UpdateState.SUCCEEDED:
        row.progress = 100
    if target in (UpdateState.FAILED, UpdateState.CANCELED):
        row.reason = reason
        row.code = code
    if is_terminal(target):
        row.finished_at = now
        row.deadline_at = None
    else:
        row.deadline_at = now + timedelta(seconds=row.timeout_s)
    return step


async def _transitions(s: AsyncSession, update_id: int) -> list[UpdateTransition]:
    query = (
        select(UpdateTransition)
        .where(UpdateTransition.update_id == update_id)
        .order_by(UpdateTransition.id)
    )
    return list((await s.scalars(query)).all())


def _new_row(
    device: Device,
    package: FirmwarePackage,
    request: UpdateRequest,
    timeout_s: float,
    now: datetime,
) -> Update:
    """A pending update of ``package`` for ``device`` as ``request`` asks, from ``now``."""
    return Update(**_new_values(device, package, request, timeout_s, now))


def _new_values(
    device: Device,
    package: FirmwarePackage,
    request: UpdateRequest,
    timeout_s: float,
    now: datetime,
) -> dict[str, Any]:
    """``_new_row``'s column values: every column a new row sets (the same for each,
    as one executemany needs)."""
    return dict(
        device_id=device.id,
        device_name=device.name,
        dialect=device.dialect,
        package_id=package.id,
        title=package.title,
        version=package.version,
        from_version=(
            device.current_sw_version if package.kind == "software" else device.current_fw_version
        ),
        kind=package.kind,
        state=UpdateState.PENDING.value,
        timeout_s=timeout_s,
        mode=request.mode,
        force=request.force,
        driver_state={},
        deadline_at=now + timedelta(seconds=timeout_s),
        created_at=now,
        updated_at=now,
    )
