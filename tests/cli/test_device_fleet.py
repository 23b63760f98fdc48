"""``otahub device label|list --filter|import``, run as subprocesses against a running hub."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.test_cli import Cli
from tests.hubproc import HubProcess


@pytest.fixture(scope="module")
def hub_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A hub whose data dir is ./otahub-data of the CLI's working directory."""
    cwd = tmp_path_factory.mktemp("cli-fleet")
    hub = HubProcess(data_dir=cwd / "otahub-data").start()
    try:
        yield Cli(hub, cwd)
    finally:
        hub.stop()


def test_device_label_and_list_by_filter(hub_cli: Cli) -> None:
    cli = hub_cli
    cli.ok("device", "add", "lab-1", "--dialect", "thin-edge", "--label", "site=berlin")
    cli.ok("device", "add", "lab-2", "--dialect", "thin-edge")
    assert "lab-2: ring=canary,site=berlin" in cli.ok(
        "device", "label", "lab-2", "site=berlin", "ring=canary"
    )
    assert "lab-1: ring=all" in cli.ok("device", "label", "lab-1", "ring=all", "--remove", "site")
    assert cli.json("device", "label", "lab-1", "--remove", "ring")["labels"] == {}
    assert "labels:      ring=canary,site=berlin" in cli.ok("device", "show", "lab-2")
    listed = cli.ok("device", "list", "--filter", "site=berlin")
    assert "lab-2" in listed and "lab-1" not in listed and "ring=canary,site=berlin" in listed
    assert [d["name"] for d in cli.json("device", "list", "--filter", "name=lab-*")] == [
        "lab-1",
        "lab-2",
    ]
    assert "reserved" in cli.fails("device", "label", "lab-1", "dialect=enos")
    assert "'online=maybe'" in cli.fails("device", "list", "--filter", "online=maybe")
    bare = cli.run("device", "label", "lab-1")
    assert bare.returncode != 0 and "key=value" in bare.stderr
