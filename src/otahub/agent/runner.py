"""The update state machine shared by every dialect.

Each phase is persisted *before* its side effects, so a kill at any moment
resumes correctly on the next start:

* ``received`` / ``downloading``: the download continues from the bytes
  already on disk;
* ``downloaded``: verification runs again (it has no side effects);
* ``verified``: the install hook has not been started, so it is started;
* ``installing``: the hook was started and may or may not have finished; it
  is **never started again**, the running version decides the outcome;
* ``reboot_pending``: the verify hook (or the running version) decides;
* ``finished``: only the terminal report is left, and it is sent again.

The terminal report is sent and acknowledged before the update moves into
the history; a kill between the two repeats that one report on restart,
which every dialect tolerates (thin-edge re-publishes the same retained
status, the others the same final state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from otahub.agent.config import AgentConfig
from otahub.agent.dialects.base import DialectClient, Step
from otahub.agent.download import DownloadError
from otahub.agent.hooks import HookOutcome, run_hook
from otahub.agent.signed import SignedTargets
from otahub.agent.state import (
    AgentState,
    FailureKind,
    Outcome,
    PackageKind,
    Phase,
    StateStore,
    UpdateRecord,
)
from otahub.agent.verify import verify_file
from otahub.agent.version import VersionSource

log = logging.getLogger(__name__)

#: Progress is reported each time the download crosses this many percent.
PROGRESS_STEP = 10
#: Phases in which nothing has been installed, so an update can still be dropped.
_ABANDONABLE = (
    Phase.RECEIVED,
    Phase.DOWNLOADING,
    Phase.DOWNLOADED,
    Phase.VERIFIED,
    Phase.FINISHED,
)


class Runner:
    def __init__(
        self,
        config: AgentConfig,
        store: StateStore,
        state: AgentState,
        versions: VersionSource,
        dialect: DialectClient,
    ) -> None:
        self.config = config
        self.store = store
        self.state = state
        self.versions = versions
        #: Where the running software version comes from (ThingsBoard ``sw_*``).
        self.software_versions = VersionSource(config.thingsboard.software)
        self.dialect = dialect
        #: Checks every image against the publisher's signed metadata when configured.
        self.signed = (
            SignedTargets(config.signing, config.download, store.dir)
            if config.signing.enabled
            else None
        )
        self._task: asyncio.Task[None] | None = None
        #: Set once an install asked for a reboot; nothing more happens until restart.
        self.awaiting_restart = False
        self.on_finished: Callable[[UpdateRecord], Awaitable[None]] | None = None

    # -- public API used by dialects ------------------------------------

    @property
    def current(self) -> UpdateRecord | None:
        return self.state.current

    @property
    def busy(self) -> bool:
        return self.state.current is not None

    def save(self) -> None:
        self.store.save(self.state)

    async def installed(self, kind: PackageKind = PackageKind.FIRMWARE) -> tuple[str, str]:
        """(name, version) of the firmware (or software) the device runs now."""
        if kind is PackageKind.SOFTWARE:
            version = await self.software_versions.current(self.state.installed_software_version)
            name = self.state.installed_software_name or self.config.thingsboard.software.name
            return name, version
        version = await self.versions.current(self.state.installed_version)
        name = self.state.installed_name or self.config.version.name
        return name, version

    def _source(self, record: UpdateRecord) -> VersionSource:
        return self.software_versions if record.kind is PackageKind.SOFTWARE else self.versions

    def accept(self, record: UpdateRecord) -> None:
        """Persist ``record`` as the current update and start working on it."""
        if self.busy:
            raise RuntimeError("an update is already in progress")
        self.state.current = record
        self.save()
        self.start()

    def start(self) -> None:
        """Drive the current update (also used on startup to resume one)."""
        if self.state.current is None or self.awaiting_restart:
            return
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.create_task(self._drive(), name="otahub-update")

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def abandon(self, key: str, reason: str) -> bool:
        """Stop working on the current update ``key``: its requester withdrew it.

        Possible until the install hook starts (and for an outcome not yet
        reported, whose report is dropped); after that the install completes
        as usual. The update is remembered as canceled, so a replay of its
        request never starts it again. Returns whether it was abandoned.
        """
        record = self.state.current
        if record is None or record.key != key:
            return False
        if record.phase not in _ABANDONABLE:
            log.warning(
                "update to %s withdrawn (%s) after its install started; it completes",
                record.version,
                reason,
            )
            return False
        await self.stop()
        if record.phase is not Phase.FINISHED:
            record.outcome = Outcome.CANCELED
            record.failure = None
            record.reason = reason
            record.phase = Phase.FINISHED
        self.state.remember(record)
        self.save()
        _remove(self.store.download_path(record))
        log.info("stopped working on the update to %s: %s", record.version, reason)
        return True

    # -- the state machine ------------------------------------------------

    async def _drive(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug must not silently stall the update forever: record it as a
            # failure (nothing was installed unless the hook ran) and report.
            log.exception("update runner crashed")
            record = self.state.current
            if record is not None and record.phase is not Phase.FINISHED:
                self._finish(record, Outcome.FAILED, FailureKind.OTHER, "internal agent error")
                await self._run()

    async def _run(self) -> None:
        while (record := self.state.current) is not None:
            phase = record.phase
            if phase is Phase.RECEIVED:
                _, version = await self.installed(record.kind)
                record.from_version = version
                record.phase = Phase.DOWNLOADING
                self.save()
                await self.dialect.report(record, Step.ACCEPTED)
                await self.dialect.report(record, Step.DOWNLOADING, 0)
            elif phase is Phase.DOWNLOADING:
                await self._download(record)
            elif phase is Phase.DOWNLOADED:
                await self._verify(record)
            elif phase is Phase.VERIFIED:
                record.phase = Phase.INSTALLING
                self.save()
                await self.dialect.report(record, Step.INSTALLING)
                await self._install(record)
                if record.phase is Phase.REBOOT_PENDING:
                    return
            elif phase is Phase.INSTALLING:
                await self._interrupted_install(record)
            elif phase is Phase.REBOOT_PENDING:
                await self._after_restart(record)
            elif phase is Phase.FINISHED:
                await self._report_final(record)

    async def _download(self, record: UpdateRecord) -> None:
        dest = self.store.download_path(record)
        last = [-1]
        pending: list[asyncio.Task[None]] = []

        def on_progress(done: int, total: int | None) -> None:
            if not total:
                return
            percent = min(100, done * 100 // total)
            bucket = percent // PROGRESS_STEP
            if bucket > last[0]:
                last[0] = bucket
                pending.append(
                    asyncio.get_running_loop().create_task(
                        self.dialect.report(record, Step.DOWNLOADING, percent)
                    )
                )

        try:
            await self.dialect.fetch(record, dest, on_progress)
        except DownloadError as exc:
            await asyncio.gather(*pending, return_exceptions=True)
            self.save()
            self._finish(record, Outcome.FAILED, FailureKind.DOWNLOAD, f"download failed: {exc}")
            return
        # Progress reports must not overtake the ones that follow.
        await asyncio.gather(*pending, return_exceptions=True)
        record.phase = Phase.DOWNLOADED
        self.save()
        await self.dialect.report(record, Step.DOWNLOADED)

    async def _verify(self, record: UpdateRecord) -> None:
        dest = self.store.download_path(record)
        if not _exists(dest):
            # The download completes the file before this phase is persisted, so
            # only outside interference gets here; fetching again could repeat it.
            self._finish(
                record, Outcome.FAILED, FailureKind.VERIFY, f"the downloaded image {dest} is gone"
            )
            return
        result = await verify_file(dest, record.checksums, record.size)
        if result.ok and self.signed is not None:
            result = await self.signed.verify(record, dest)
        if not result.ok:
            _remove(dest)
            self._finish(record, Outcome.FAILED, FailureKind.VERIFY, result.reason)
            return
        record.phase = Phase.VERIFIED
        self.save()
        await self.dialect.report(record, Step.VERIFIED)

    def _values(self, record: UpdateRecord) -> dict[str, str]:
        return {
            "file": str(self.store.download_path(record)),
            "name": record.name,
            "version": record.version,
            "kind": record.kind.value,
        }

    async def _install(self, record: UpdateRecord) -> None:
        hooks = self.config.hooks
        install = hooks.install
        if record.kind is PackageKind.SOFTWARE and self.config.thingsboard.software.install:
            install = self.config.thingsboard.software.install
        result = await run_hook(
            install,
            self._values(record),
            timeout=hooks.timeout,
            reboot_exit_code=hooks.reboot_exit_code,
            what="install hook",
        )
        if result.outcome is HookOutcome.OK:
            self._succeed(record)
        elif result.outcome is HookOutcome.REBOOT_REQUIRED:
            record.phase = Phase.REBOOT_PENDING
            record.rebooted = True
            self.save()
            self.awaiting_restart = True
            await self.dialect.report(record, Step.RESTARTING)
            if hooks.reboot:
                reboot = await run_hook(
                    hooks.reboot, self._values(record), timeout=hooks.timeout, what="reboot hook"
                )
                if reboot.outcome is not HookOutcome.OK:
                    log.error("%s; restart the device to complete the update", reboot.reason)
            else:
                log.info("installed %s; waiting for the device to restart", record.version)
        else:
            self._finish(record, Outcome.FAILED, FailureKind.INSTALL, result.reason)

    async def _interrupted_install(self, record: UpdateRecord) -> None:
        """The agent died while the install hook ran: judge by the running version."""
        _, version = await self.installed(record.kind)
        if self._source(record).authoritative and version == record.version:
            log.info("install of %s completed before the agent stopped", record.version)
            self._succeed(record)
        else:
            self._finish(
                record,
                Outcome.FAILED,
                FailureKind.INSTALL,
                f"the agent stopped while the install hook ran; the device runs {version}",
            )

    async def _after_restart(self, record: UpdateRecord) -> None:
        await self.dialect.report(record, Step.RESTARTED)
        hooks = self.config.hooks
        if hooks.verify:
            result = await run_hook(
                hooks.verify, self._values(record), timeout=hooks.timeout, what="verify hook"
            )
            ok, reason = result.outcome is HookOutcome.OK, result.reason
        elif self._source(record).authoritative:
            _, version = await self.installed(record.kind)
            ok = version == record.version
            reason = f"after the restart the device runs {version}, not {record.version}"
        else:
            ok, reason = True, None
        if ok:
            self._succeed(record)
            return
        if hooks.rollback:
            rollback = await run_hook(
                hooks.rollback, self._values(record), timeout=hooks.timeout, what="rollback hook"
            )
            if rollback.outcome is HookOutcome.OK:
                reason = f"{reason}; rolled back"
            else:
                reason = f"{reason}; {rollback.reason}"
        self._finish(record, Outcome.FAILED, FailureKind.INSTALL, reason)

    def _succeed(self, record: UpdateRecord) -> None:
        if record.kind is PackageKind.SOFTWARE:
            self.state.installed_software_name = record.name
            self.state.installed_software_version = record.version
        else:
            self.state.installed_name = record.name
            self.state.installed_version = record.version
        self._finish(record, Outcome.SUCCEEDED, None, None)

    def _finish(
        self,
        record: UpdateRecord,
        outcome: Outcome,
        failure: FailureKind | None,
        reason: str | None,
    ) -> None:
        record.outcome = outcome
        record.failure = failure
        record.reason = reason
        record.phase = Phase.FINISHED
        self.save()
        if outcome is Outcome.FAILED:
            log.warning("update to %s failed: %s", record.version, reason)
        else:
            log.info("update to %s succeeded", record.version)

    async def _report_final(self, record: UpdateRecord) -> None:
        step = Step.SUCCEEDED if record.outcome is Outcome.SUCCEEDED else Step.FAILED
        await self.dialect.report(record, step)
        self.state.remember(record)
        self.state.current = None
        self.save()
        _remove(self.store.download_path(record))
        await self.dialect.on_idle()


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _exists(path: Path) -> bool:
    return path.exists()
