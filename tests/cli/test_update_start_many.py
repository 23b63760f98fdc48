"""``otahub update start-many FILE``, run as a subprocess against a running hub."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.test_cli import Cli
from tests.hubproc import HubProcess


@pytest.fixture(scope="module")
def hub_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A hub whose data dir is ./otahub-data of the CLI's working directory."""
    cwd = tmp_path_factory.mktemp("cli-start-many")
    hub = HubProcess(data_dir=cwd / "otahub-data").start()
    try:
        cli = Cli(hub, cwd)
        image = cwd / "fw.bin"
        image.write_bytes(b"start many\n" * 300)
        cli.ok("firmware", "upload", str(image), "--title", "fw", "--version", "2.0")
        for n in (1, 2, 3):  # EnOS devices that never connect: their updates stay pending
            cli.ok(
                "device", "add", f"many-{n}", "--dialect", "enos",
                "--product-key", "pk", "--device-key", f"dk{n}", "--secret", "s",
            )  # fmt: skip
        yield cli
    finally:
        hub.stop()


def test_start_many_csv_starts_each_row_and_lists_the_refused_ones(hub_cli: Cli) -> None:
    cli = hub_cli
    path = cli.cwd / "updates.csv"
    path.write_text(
        "device,title,version,mode,force,timeout\n"
        "many-1,fw,2.0,,,600\n"
        "ghost,fw,2.0,,,\n"
        "\n"
        "many-2,fw,2.0,on-request,true,\n"
        "many-3,fw,9.9,,,\n"
        "many-3,fw,2.0,,maybe,\n",
        encoding="utf-8",
    )
    result = cli.run("update", "start-many", str(path))
    assert result.returncode == 1, result.stderr
    assert "started 2 update(s) from updates.csv" in result.stdout
    assert "3 row(s) of updates.csv refused:" in result.stderr
    assert "line 3 (ghost): device 'ghost' does not exist" in result.stderr
    assert "line 6 (many-3): no firmware package 'fw' version '9.9'" in result.stderr
    assert "line 7 (many-3): force: true or false, not 'maybe'" in result.stderr
    listed = {u["device"]: u for u in cli.json("update", "list")}
    assert sorted(listed) == ["many-1", "many-2"]
    assert listed["many-1"]["timeout"] == 600
    assert (listed["many-2"]["mode"], listed["many-2"]["force"]) == ("on-request", True)
    again = cli.cwd / "again.jsonl"
    again.write_text('{"device": "many-1", "title": "fw", "version": "2.0"}\nnot json\n')
    result = cli.run("update", "start-many", str(again))
    assert result.returncode == 1
    assert "line 1 (many-1): device 'many-1' already has active firmware update" in result.stderr
    assert "line 2: not JSON" in result.stderr
    fine = cli.cwd / "fine.jsonl"
    fine.write_text('{"device": "many-3", "title": "fw", "version": "2.0"}\n')
    assert "started 1 update(s) from fine.jsonl" in cli.ok("update", "start-many", str(fine))
