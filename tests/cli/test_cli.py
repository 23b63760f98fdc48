"""The ``otahub`` admin commands, run as subprocesses against a running hub."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hubproc import HubProcess


class Cli:
    def __init__(self, hub: HubProcess, cwd: Path) -> None:
        self.hub = hub
        self.cwd = cwd

    def run(
        self, *args: str, env: dict[str, str] | None = None, server: bool = True
    ) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OTAHUB_")}
        argv = [sys.executable, "-m", "otahub", *args]
        if server:
            argv += ["--server", self.hub.http_url]
        return subprocess.run(
            argv,
            cwd=self.cwd,
            env={**base, "COLUMNS": "200", **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, **kw: Any) -> str:
        result = self.run(*args, **kw)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def fails(self, *args: str, **kw: Any) -> str:
        result = self.run(*args, **kw)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.stderr
        return errors[0]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A hub whose data dir is ./otahub-data of the CLI's working directory."""
    cwd = tmp_path_factory.mktemp("cli")
    hub = HubProcess(data_dir=cwd / "otahub-data").start()
    try:
        yield Cli(hub, cwd)
    finally:
        hub.stop()


def test_firmware_upload_and_list(cli: Cli) -> None:
    image = cli.cwd / "image.bin"
    data = os.urandom(3 * 1024 * 1024 + 5)
    image.write_bytes(data)
    package = cli.json(
        "firmware",
        "upload",
        str(image),
        "--title",
        "CIM-168",
        "--version",
        "1.0.1",
        "--device-type",
        "CIM",
    )
    assert package["sha256"] == hashlib.sha256(data).hexdigest()
    assert (package["title"], package["version"], package["size"]) == (
        "CIM-168",
        "1.0.1",
        len(data),
    )
    human = cli.ok(
        "firmware",
        "upload",
        str(image),
        "--title",
        "CIM-168",
        "--version",
        "1.0.2",
        "--kind",
        "software",
    )
    assert "uploaded CIM-168 1.0.2" in human
    line = cli.fails("firmware", "upload", str(image), "--title", "CIM-168", "--version", "1.0.1")
    assert line.startswith("error: 409")
    assert "already exists" in line
    table = cli.ok("firmware", "list")
    assert "CIM-168" in table and "1.0.2" in table and "software" in table
    listed = cli.json("firmware", "list")
    assert [p["version"] for p in listed] == ["1.0.1", "1.0.2"]
    assert "no such file" in cli.fails(
        "firmware", "upload", "missing.bin", "--title", "x", "--version", "1"
    )


def test_devices_and_updates(cli: Cli) -> None:
    image = cli.cwd / "small.bin"
    image.write_bytes(b"firmware")
    cli.ok("firmware", "upload", str(image), "--title", "APP", "--version", "2.0")
    tb = cli.json("device", "add", "tb-01", "--dialect", "thingsboard", "--token", "TBTOKEN1")
    assert (tb["name"], tb["token"]) == ("tb-01", "TBTOKEN1")
    out = cli.ok(
        "device",
        "add",
        "inv-01",
        "--dialect",
        "enos",
        "--product-key",
        "pk",
        "--device-key",
        "dk",
        "--secret",
        "sec",
        "--device-type",
        "inverter",
    )
    assert "added enos device inv-01" in out
    assert "enos devices need" in cli.fails("device", "add", "x", "--dialect", "enos")
    assert "error: 409" in cli.fails(
        "device", "add", "tb-02", "--dialect", "thingsboard", "--token", "TBTOKEN1"
    )
    table = cli.ok("device", "list")
    assert "tb-01" in table and "inv-01" in table and "thingsboard" in table
    assert {d["name"] for d in cli.json("device", "list")} >= {"tb-01", "inv-01"}

    update = cli.json("update", "start", "--device", "tb-01", "--title", "APP", "--version", "2.0")
    assert {"id", "device", "title", "version", "state", "progress", "reason"} <= set(update)
    assert (update["device"], update["state"]) == ("tb-01", "pending")
    assert "error: 409" in cli.fails(
        "update", "start", "--device", "tb-01", "--title", "APP", "--version", "2.0"
    )
    listed = cli.json("update", "list", "--device", "tb-01", "--state", "pending")
    assert [u["id"] for u in listed] == [update["id"]]
    assert "tb-01" in cli.ok("update", "list")
    shown = cli.json("update", "show", str(update["id"]))
    assert [t["to_state"] for t in shown["transitions"]] == ["pending"]
    human = cli.ok("update", "show", str(update["id"]))
    assert "pending" in human and "APP 2.0" in human
    canceled = cli.json("update", "cancel", str(update["id"]))
    assert canceled["state"] == "canceled"
    assert "error: 409" in cli.fails("update", "cancel", str(update["id"]))
    assert "error: 404" in cli.fails("update", "show", "999999")
    assert cli.json("update", "list", "--state", "pending") == []
    assert "error: 422" in cli.fails("update", "list", "--state", "bogus")


def test_firmware_upload_sets_the_package_checksum_algorithm(cli: Cli) -> None:
    image = cli.cwd / "alg.bin"
    image.write_bytes(b"firmware with its checksum algorithm")
    package = cli.json(
        "firmware",
        "upload",
        str(image),
        "--title",
        "ALG",
        "--version",
        "1",
        "--checksum-algorithm",
        "murmur3_128",
    )
    assert package["checksum_algorithm"] == "MURMUR3_128"
    human = cli.ok("firmware", "upload", str(image), "--title", "ALG", "--version", "2")
    assert "checksum algorithm SHA256" in human
    refused = cli.fails(
        "firmware",
        "upload",
        str(image),
        "--title",
        "ALG",
        "--version",
        "3",
        "--checksum-algorithm",
        "SHA1",
    )
    assert "error: 422" in refused and "unknown checksum algorithm 'SHA1'" in refused


def test_device_remove_refuses_a_device_with_active_updates_unless_forced(cli: Cli) -> None:
    image = cli.cwd / "remove.bin"
    image.write_bytes(b"firmware to remove")
    cli.ok("firmware", "upload", str(image), "--title", "RM", "--version", "1")
    cli.ok("device", "add", "rm-01", "--dialect", "thingsboard", "--token", "RMTOKEN1")
    update = cli.json("update", "start", "--device", "rm-01", "--title", "RM", "--version", "1")
    refused = cli.fails("device", "remove", "rm-01")
    assert "error: 409" in refused and f"active updates: {update['id']} (RM 1," in refused
    assert cli.json("update", "show", str(update["id"]))["state"] == "pending"
    assert "removed device rm-01" in cli.ok("device", "remove", "rm-01", "--force")
    assert "error: 404" in cli.fails("device", "remove", "rm-01")
    kept = cli.json("update", "show", str(update["id"]))
    assert (kept["state"], kept["device"]) == ("canceled", "rm-01")


def test_device_set_password_from_a_file_then_clear(cli: Cli) -> None:
    cli.ok("device", "add", "pw-01", "--dialect", "thin-edge")
    assert cli.json("device", "show", "pw-01")["has_password"] is False
    secret = cli.cwd / "pw-01.password"
    secret.write_text("s3cret-pw\n")
    out = cli.ok("device", "set-password", "pw-01", "--password-file", str(secret))
    assert "set the password of pw-01" in out
    assert cli.json("device", "show", "pw-01")["has_password"] is True
    assert "error: 404" in cli.fails("device", "set-password", "no-such-device", "--clear")
    assert "removed the password of pw-01" in cli.ok("device", "set-password", "pw-01", "--clear")
    assert cli.json("device", "show", "pw-01")["has_password"] is False


def test_token_sources(cli: Cli, tmp_path: Path) -> None:
    token = (cli.cwd / "otahub-data" / "admin.token").read_text().strip()
    # ./otahub-data/admin.token is found from the working directory (the fixture's).
    cli.ok("device", "list")
    elsewhere = Cli(cli.hub, tmp_path)
    line = elsewhere.fails("device", "list")
    assert line.startswith("error: 401") and "pass --admin-token" in line
    elsewhere.ok("device", "list", "--token", token)
    elsewhere.ok("device", "list", env={"OTAHUB_TOKEN": token})
    elsewhere.ok("device", "add", "te-9", "--dialect", "thin-edge", "--admin-token", token)
    assert "error: 401" in elsewhere.fails("device", "list", "--token", "nope")


def test_unreachable_hub(cli: Cli) -> None:
    line = cli.fails("firmware", "list", "--server", "http://127.0.0.1:9", server=False)
    assert "cannot reach the hub" in line
    assert "error:" in cli.fails("firmware", "list", "--server", "nonsense", server=False)


def test_401_hint_names_admin_token_not_the_thingsboard_token(cli: Cli, tmp_path: Path) -> None:
    line = Cli(cli.hub, tmp_path).fails("firmware", "list")
    assert "--admin-token" in line
    assert "--token," not in line and "pass --token" not in line


def test_help_shows_booleans_as_flags(cli: Cli) -> None:
    shown = cli.ok("update", "start", "--help", server=False)
    force = next(line for line in shown.splitlines() if "--force" in line)
    assert "<bool>" not in force, force
    assert "<bool>" not in shown
    assert "<str>" in next(line for line in shown.splitlines() if "--device" in line)


def test_firmware_show_and_delete(cli: Cli) -> None:
    image = cli.cwd / "show.bin"
    image.write_bytes(b"firmware to show")
    package = cli.json("firmware", "upload", str(image), "--title", "SHOW", "--version", "3")
    shown = cli.ok("firmware", "show", str(package["id"]))
    assert "SHOW" in shown and package["sha256"] in shown and "16 bytes" in shown
    assert cli.json("firmware", "show", str(package["id"]))["id"] == package["id"]
    cli.ok("device", "add", "fw-del", "--dialect", "thingsboard", "--token", "FWDELTOKEN")
    update = cli.json("update", "start", "--device", "fw-del", "--title", "SHOW", "--version", "3")
    assert "error: 409" in cli.fails("firmware", "delete", str(package["id"]))
    cli.ok("update", "cancel", str(update["id"]))
    assert f"deleted firmware package {package['id']}" in cli.ok(
        "firmware", "delete", str(package["id"])
    )
    assert "error: 404" in cli.fails("firmware", "show", str(package["id"]))


def test_device_set_changes_type_and_credentials(cli: Cli) -> None:
    cli.ok("device", "add", "set-tb", "--dialect", "thingsboard", "--token", "SETTOKEN1")
    cli.ok("device", "add", "set-other", "--dialect", "thingsboard", "--token", "SETTOKEN2")
    out = cli.ok("device", "set", "set-tb", "--device-type", "sensor", "--token", "SETTOKEN3")
    assert "changed device_type, token of device set-tb" in out
    shown = cli.json("device", "show", "set-tb")
    assert (shown["device_type"], shown["token"]) == ("sensor", "SETTOKEN3")
    human = cli.ok("device", "show", "set-tb")
    assert "SETTOKEN3" in human and "sensor" in human
    # another device's token: refused, nothing changed
    assert "error: 409" in cli.fails("device", "set", "set-tb", "--token", "SETTOKEN2")
    # a credential the dialect does not use
    assert "error: 422" in cli.fails("device", "set", "set-tb", "--secret", "x")
    cli.ok("device", "set", "set-tb", "--clear-device-type")
    assert cli.json("device", "show", "set-tb")["device_type"] is None
    assert "nothing to change" in cli.run("device", "set", "set-tb").stderr
    assert "error: 404" in cli.fails("device", "set", "nobody", "--device-type", "x")


def test_update_list_pages_with_limit_and_offset(cli: Cli) -> None:
    image = cli.cwd / "page.bin"
    image.write_bytes(b"firmware to page")
    cli.ok("firmware", "upload", str(image), "--title", "PAGE", "--version", "1")
    ids = []
    for n in range(5):
        cli.ok("device", "add", f"page-{n}", "--dialect", "thingsboard", "--token", f"PAGETK{n}")
        started = cli.json(
            "update", "start", "--device", f"page-{n}", "--title", "PAGE", "--version", "1"
        )
        ids.append(started["id"])
    newest_first = sorted(ids, reverse=True)
    first = cli.json("update", "list", "--state", "pending", "--limit", "2")
    second = cli.json("update", "list", "--state", "pending", "--limit", "2", "--offset", "2")
    assert [u["id"] for u in first] == newest_first[:2]
    assert [u["id"] for u in second] == newest_first[2:4]
    table = cli.ok("update", "list", "--state", "pending", "--limit", "2", "--offset", "2")
    assert "next page: --offset 4" in table
    beyond = cli.ok("update", "list", "--limit", "2", "--offset", "100000")
    assert "no updates after the first 100000" in beyond


def test_update_start_says_what_a_pending_update_waits_for(cli: Cli) -> None:
    image = cli.cwd / "wait.bin"
    image.write_bytes(b"firmware to wait for")
    cli.ok("firmware", "upload", str(image), "--title", "WAIT", "--version", "1")
    cli.ok("device", "add", "wait-tb", "--dialect", "thingsboard", "--token", "WAITTOKEN")
    out = cli.ok("update", "start", "--device", "wait-tb", "--title", "WAIT", "--version", "1")
    assert "pending: waiting for wait-tb to come online" in out
    cli.ok("device", "add", "wait-req", "--dialect", "thingsboard", "--token", "WAITTOKEN2")
    out = cli.ok(
        "update",
        "start",
        "--device",
        "wait-req",
        "--title",
        "WAIT",
        "--version",
        "1",
        "--mode",
        "on-request",
    )
    assert "pending: waiting for wait-req to ask for it" in out
