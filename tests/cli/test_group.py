"""``otahub group``, run as subprocesses against a running hub."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.test_cli import Cli
from tests.hubproc import HubProcess


@pytest.fixture(scope="module")
def hub_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A hub whose data dir is ./otahub-data of the CLI's working directory."""
    cwd = tmp_path_factory.mktemp("cli-group")
    hub = HubProcess(data_dir=cwd / "otahub-data").start()
    try:
        yield Cli(hub, cwd)
    finally:
        hub.stop()


def test_group_create_show_list_delete(hub_cli: Cli) -> None:
    cli = hub_cli
    for i in range(3):
        cli.ok("device", "add", f"sensor-{i}", "--dialect", "thin-edge")
    cli.ok("device", "add", "gw-0", "--dialect", "thin-edge")
    assert "created dynamic group sensors with 3 device(s)" in cli.ok(
        "group", "create", "sensors", "--filter", "name=sensor-*"
    )
    created = cli.json("group", "create", "pilot", "--devices", "gw-0, sensor-1")
    assert (created["kind"], created["size"]) == ("static", 2)

    shown = cli.ok("group", "show", "sensors", "--limit", "2", "--offset", "1")
    assert "kind:    dynamic" in shown
    assert "filter:  name=sensor-*" in shown
    assert "devices: 3" in shown
    assert "members (2-3 of 3):" in shown
    assert "  sensor-1\n  sensor-2\n" in shown
    assert cli.json("group", "show", "pilot")["members"] == ["sensor-1", "gw-0"]

    listed = cli.ok("group", "list")
    assert "pilot" in listed and "static" in listed and "name=sensor-*" in listed
    assert {g["name"]: g["size"] for g in cli.json("group", "list")} == {"pilot": 2, "sensors": 3}

    assert "deleted group pilot" in cli.ok("group", "delete", "pilot")
    assert "404" in cli.fails("group", "show", "pilot")
    assert [g["name"] for g in cli.json("group", "list")] == ["sensors"]


def test_group_create_refusals_are_one_line(hub_cli: Cli) -> None:
    cli = hub_cli
    error = cli.fails("group", "create", "ghosts", "--devices", "ghost-1,ghost-2")
    assert "422" in error and "ghost-1, ghost-2" in error
    assert "'online=maybe'" in cli.fails("group", "create", "g", "--filter", "online=maybe")
    both = cli.run("group", "create", "g", "--filter", "", "--devices", "x")
    assert both.returncode != 0 and "either --filter or --devices" in both.stderr
