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


def test_device_import_csv_registers_every_row(hub_cli: Cli) -> None:
    cli = hub_cli
    path = cli.cwd / "devices.csv"
    path.write_text(
        "name,dialect,token,product_key,device_key,secret,password,device_type,gateway,labels\n"
        "csv-tb,thingsboard,csv-T1,,,,,CIM,,site=berlin;ring=canary\n"
        "csv-en,enos,,csv-p,csv-d,csv-s,,,,\n"
        "\n"
        "csv-gw,thin-edge,,,,,pw 1,,true,site=paris\n",
        encoding="utf-8",
    )
    assert "checked 3 device(s) in devices.csv" in cli.ok(
        "device", "import", str(path), "--dry-run"
    )
    assert "404" in cli.fails("device", "show", "csv-tb")
    assert "imported 3 device(s) from devices.csv" in cli.ok("device", "import", str(path))
    tb = cli.json("device", "show", "csv-tb")
    assert (tb["token"], tb["device_type"]) == ("csv-T1", "CIM")
    assert tb["labels"] == {"site": "berlin", "ring": "canary"}
    gw = cli.json("device", "show", "csv-gw")
    assert gw["gateway"] and gw["has_password"] and gw["labels"] == {"site": "paris"}
    assert cli.json("device", "show", "csv-en")["product_key"] == "csv-p"


def test_device_import_jsonl_lists_every_refused_line_and_registers_nothing(hub_cli: Cli) -> None:
    cli = hub_cli
    cli.ok("device", "add", "jl-taken", "--dialect", "thin-edge")
    path = cli.cwd / "devices.jsonl"
    lines = [
        '{"name": "jl-1", "dialect": "thin-edge", "labels": {"site": "berlin"}}',
        '{"name": "jl-2", "dialect": "thingsboard"}',  # line 2: no token
        "{not json",  # line 3
        "",
        '{"name": "jl-taken", "dialect": "thin-edge"}',  # line 5
        '["a list"]',  # line 6
        '{"name": "jl-1", "dialect": "thin-edge"}',  # line 7: as line 1
        '{"name": "jl-8", "dialect": "thin-edge", "labels": {"a,b": "c"}}',  # line 8
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli.run("device", "import", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: 6 of 7 device(s) in devices.jsonl refused; nothing was registered:" in (
        result.stderr
    )
    refused = [line.strip() for line in result.stderr.splitlines() if line.startswith("  line")]
    assert [r.split(":")[0] for r in refused] == [
        "line 2 (jl-2)",
        "line 3",
        "line 5 (jl-taken)",
        "line 6",
        "line 7 (jl-1)",
        "line 8 (jl-8)",
    ]
    assert "need token" in refused[0]
    assert "not JSON" in refused[1]
    assert "already exists" in refused[2]
    assert refused[4] == "line 7 (jl-1): name 'jl-1' is also on line 1"
    assert "404" in cli.fails("device", "show", "jl-1")


def test_device_import_csv_refusals_name_their_lines(hub_cli: Cli) -> None:
    cli = hub_cli
    path = cli.cwd / "bad.csv"
    path.write_text(
        "name,dialect,gateway,labels\n"
        "bc-1,thin-edge,maybe,\n"  # line 2
        "bc-2,thin-edge,,site\n"  # line 3
        "bc-3,thin-edge,,,extra\n"  # line 4
        "bc-4,thingsboard,,\n"  # line 5 (the hub: no token)
        "bc-5,thin-edge,,site=x\n"  # line 6
        "bc-5,thin-edge,,\n",  # line 7: as line 6
        encoding="utf-8",
    )
    result = cli.run("device", "import", str(path))
    assert result.returncode == 1
    refused = [line.strip() for line in result.stderr.splitlines() if line.startswith("  line")]
    assert refused == [
        "line 2 (bc-1): gateway: true or false, not 'maybe'",
        "line 3 (bc-2): labels: 'site' is not key=value",
        "line 4 (bc-3): 5 cells, the header has 4",
        "line 5 (bc-4): thingsboard devices need token",
        "line 7 (bc-5): name 'bc-5' is also on line 6",
    ]
    unknown = cli.cwd / "unknown.csv"
    unknown.write_text("name,dialect,colour\nx,thin-edge,red\n", encoding="utf-8")
    failed = cli.run("device", "import", str(unknown))
    assert failed.returncode != 0 and "unknown column(s) 'colour'" in failed.stderr
    assert "404" in cli.fails("device", "show", "bc-5")
