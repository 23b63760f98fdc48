"""The dashboard in a real browser against ``otahub serve`` and thin-edge devices on MQTT."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.fleet import Fleet
from tests.hubproc import HubProcess

pytest.importorskip("playwright.sync_api", reason="playwright comes with the test extras")

from playwright.sync_api import Page, expect

from tests.e2e.conftest import screenshot_dir

TOKEN = "e2e-admin-token-0123456789"
DEVICES = [f"e2e-dev-{i:02d}" for i in range(12)]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    running = HubProcess(tmp_path / "data", env={"OTAHUB_ADMIN_TOKEN": TOKEN}).start()
    try:
        yield running
    finally:
        running.stop()
        assert "Traceback" not in running.log()


@pytest.fixture
def fleet(hub: HubProcess) -> Iterator[Fleet]:
    devices = Fleet(hub.mqtt_port, DEVICES).start()
    api = httpx.Client(base_url=hub.http_url, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        for name in DEVICES:  # registered by the hub on sight
            _poll(lambda n=name: api.get(f"/api/v1/devices/{n}").status_code == 200)
        yield devices
    finally:
        devices.stop()
        api.close()


def _poll(check: object, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def sign_in(page: Page, hub: HubProcess) -> None:
    page.goto(hub.http_url + "/")
    expect(page).to_have_url(re.compile(r"/signin"))
    page.get_by_label("Admin token").fill(TOKEN)
    page.keyboard.press("Enter")  # the keyboard is enough
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def upload(page: Page, hub: HubProcess, tmp_path: Path, version: str) -> None:
    image = tmp_path / f"fw-{version}.bin"
    image.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: the progress bar has work to do
    page.goto(hub.http_url + "/firmware")
    page.get_by_label("Title").fill("fw")
    page.get_by_label("Version").fill(version)
    page.get_by_label("Package type").select_option("firmware")
    page.get_by_label("Checksum algorithm").select_option("SHA256")
    page.get_by_label("File").set_input_files(str(image))
    # what the progress bar and its status said when the page moved on
    page.evaluate(
        """window.addEventListener("pagehide", () => sessionStorage.setItem("upload",
            document.getElementById("upload-progress").value + "|"
            + document.getElementById("upload-status").textContent))"""
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("heading", name=f"fw {version}")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('upload')") == "100|Uploaded."
    expect(page.get_by_text("1.0 MiB (1048576 bytes)")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("MURMUR3_128")


def create_rollout(page: Page, hub: HubProcess, name: str, version: str, **fields: str) -> None:
    page.goto(hub.http_url + "/rollouts/new")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Package").select_option(label=f"fw {version}")
    page.get_by_label("Target filter").fill("dialect=thin-edge")
    for label, value in fields.items():
        page.get_by_label(label).fill(value)
    page.get_by_role("button", name="Create rollout").click()
    expect(page.get_by_role("heading", name=f"Rollout {name}")).to_be_visible()


def stage_number(page: Page, stage: int, what: str) -> int:
    return int(page.locator(f"#stage-{stage}").get_attribute(f"data-{what}") or 0)


def test_rollout_advances_live_brakes_on_failures_and_resumes(
    page: Page, hub: HubProcess, fleet: Fleet, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    sign_in(page, hub)
    upload(page, hub, tmp_path, "1.0")

    create_rollout(page, hub, "spring", "1.0", **{"Stages (cumulative)": "2,50%,100%"})
    # Nothing reloads the page from here: a marker set now must survive every change.
    page.evaluate("window.__notReloaded = true")
    live = page.locator("#rollout-live")
    expect(page.locator("#stage-1")).to_have_attribute("data-succeeded", "2", timeout=60_000)
    expect(page.locator("#stage-2")).to_have_attribute("data-succeeded", "4", timeout=60_000)
    page.screenshot(path=str(shots / "dashboard-rollout.png"), full_page=True)
    expect(page.locator("#stage-3")).to_have_attribute("data-succeeded", "6", timeout=60_000)
    expect(page.locator("#rollout-state")).to_have_text("finished", timeout=60_000)
    assert page.evaluate("window.__notReloaded") is True
    assert int(live.get_attribute("data-live-updates") or 0) >= 3

    page.goto(hub.http_url + "/")
    expect(page.locator("#devices-total")).to_have_text("12")
    expect(page.locator("svg.chart")).to_contain_text("fw 1.0")

    # Faults injected: the brake pauses the next rollout with its numbers.
    fleet.failing = True
    upload(page, hub, tmp_path, "2.0")
    create_rollout(
        page,
        hub,
        "summer",
        "2.0",
        **{
            "Stages (cumulative)": "4,100%",
            "Success threshold (%)": "0",
            "Error threshold (%)": "20",
            "Finished before the brake judges": "2",
            "Max concurrent": "2",
        },
    )
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#rollout-state")).to_have_text("paused", timeout=60_000)
    expect(page.locator("#pause-reason")).to_contain_text("failed")
    assert stage_number(page, 1, "failed") >= 2
    assert stage_number(page, 2, "waiting") > 0  # the brake held them back
    assert page.evaluate("window.__notReloaded") is True

    # The overview names the latest failures with their reasons.
    page.goto(hub.http_url + "/")
    expect(page.get_by_text("flash write error (injected)").first).to_be_visible()
    expect(page.get_by_role("link", name="summer")).to_be_visible()
    page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)

    # The updates already running when the brake pulled end too (failed, as injected);
    # then the faults are fixed, and after the resume the rest of the fleet gets it.
    page.go_back()
    for stage in (1, 2):
        expect(page.locator(f"#stage-{stage}")).to_have_attribute(
            "data-running", "0", timeout=60_000
        )
    fleet.failing = False
    page.get_by_role("button", name="Resume").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Resume: done.")
    expect(page.locator("#rollout-state")).to_have_text("finished", timeout=90_000)
    assert stage_number(page, 2, "waiting") == 0
    # all of stage 2 but what the brake's stage may have started before it pulled
    assert stage_number(page, 2, "succeeded") >= 6

    # A device page with each update's audit trail.
    page.goto(hub.http_url + "/devices")
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#devices-count")).to_contain_text("12 devices")
    page.get_by_label("Name contains").fill("e2e-dev-01")  # htmx swaps the table alone
    expect(page.locator("#devices-count")).to_contain_text("1 device,")
    assert page.evaluate("window.__notReloaded") is True
    expect(page).to_have_url(re.compile(r"/devices\?q=e2e-dev-01"))
    page.get_by_role("link", name="e2e-dev-01").click()
    trail = page.get_by_role("table", name=re.compile(r"Audit trail of update"))
    expect(page.locator("details.trail")).to_have_count(2)  # spring's and summer's
    expect(trail.first).to_contain_text("rollout:summer")
    expect(trail.first).to_contain_text("thin-edge:executing")
    older = page.locator("details.trail").last  # closed: its text is there, not shown
    older.locator("summary").click()
    expect(older.get_by_role("table")).to_contain_text("rollout:spring")
    expect(older.get_by_role("table")).to_contain_text("succeeded")

    # A tablet's width: the pages fit (wide tables scroll inside their own box).
    page.set_viewport_size({"width": 768, "height": 1024})
    for path in ("/", "/devices", "/rollouts/summer", "/firmware", "/updates"):
        page.goto(hub.http_url + path)
        fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert fits, path


def test_forms_without_the_csrf_token_are_refused_and_sign_out_ends_the_session(
    page: Page, hub: HubProcess, tmp_path: Path
) -> None:
    sign_in(page, hub)
    page.goto(hub.http_url + "/devices")
    # the session's cookie goes along (same browser context), the token does not
    refused = page.request.post(hub.http_url + "/rollouts/x/pause", form={"reason": "x"})
    assert refused.status == 403
    forged = page.request.post(
        hub.http_url + "/rollouts/x/pause", form={"reason": "x", "csrf": "forged"}
    )
    assert forged.status == 403
    upload_refused = page.request.post(
        hub.http_url + "/firmware/upload",
        multipart={
            "title": "fw",
            "version": "9",
            "file": {"name": "f", "mimeType": "application/octet-stream", "buffer": b"x"},
        },
    )
    assert upload_refused.status == 403
    cookie = next(c for c in page.context.cookies() if c["name"] == "otahub_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/signin"))
    page.goto(hub.http_url + "/rollouts")
    expect(page).to_have_url(re.compile(r"/signin\?next="))
    page.get_by_label("Admin token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the admin token")
