"""``otahub rollout``: one release for many devices, in stages, with brakes."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from otahub.cli.client import (
    DEFAULT_SERVER,
    Client,
    Json,
    Server,
    Token,
    connect,
    dash,
    out,
    print_json,
    when,
)

app = typer.Typer(no_args_is_help=True, help="Rollouts: a release for many devices, in stages.")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Rollout name.", show_default=False)]
ENDED = ("finished", "canceled")


@app.command()
def create(
    name: NameArg,
    title: Annotated[str, typer.Option(help="Package title.", show_default=False)],
    version: Annotated[str, typer.Option(help="Package version.", show_default=False)],
    group: Annotated[str | None, typer.Option(help="Target group.")] = None,
    filter_: Annotated[
        str | None,
        typer.Option("--filter", help="Target filter, like 'site=berlin,dialect=enos'."),
    ] = None,
    stages: Annotated[str, typer.Option(help="Cumulative stage sizes: 5,10%,50%,100%.")] = "100%",
    success_threshold: Annotated[
        float, typer.Option(help="Percent of a stage that must succeed before the next.")
    ] = 95.0,
    error_threshold: Annotated[
        float, typer.Option(help="Percent of failures in a stage that pauses the rollout.")
    ] = 5.0,
    min_finished: Annotated[
        int, typer.Option(help="Finished devices of a stage before the brake judges.")
    ] = 10,
    max_concurrent: Annotated[int | None, typer.Option(help="Updates running at once.")] = None,
    rate: Annotated[str | None, typer.Option(help="Starts per time: 1000/min, 20/s.")] = None,
    ramp: Annotated[
        str | None, typer.Option(help="Rate factor after each successful stage: 2x.")
    ] = None,
    window: Annotated[
        str | None, typer.Option(help="Cron expression opening the maintenance window.")
    ] = None,
    window_duration: Annotated[
        str | None, typer.Option(help="How long the window stays open: 2h.")
    ] = None,
    timezone: Annotated[str, typer.Option(help="The window's time zone.")] = "UTC",
    start_at: Annotated[
        str | None, typer.Option(help="Not before this time: 2026-12-24T02:00:00+01:00.")
    ] = None,
    retries: Annotated[int, typer.Option(help="Restarts per failed device (retry-failed).")] = 0,
    update_timeout: Annotated[
        str | None, typer.Option(help="Per update without progress: 1h (hub default if unset).")
    ] = None,
    dynamic: Annotated[
        bool, typer.Option("--dynamic", help="Devices joining the targets later get it too.")
    ] = False,
    mode: Annotated[
        str, typer.Option(help="push: the hub sends it; on-request: offered when asked.")
    ] = "push",
    supersede: Annotated[
        bool,
        typer.Option("--supersede", help="Take devices over from older active rollouts."),
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of the device order's shuffle.")] = None,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Create rollout NAME of package TITLE VERSION (start it with `rollout start`)."""
    body: dict[str, Any] = {
        "name": name,
        "title": title,
        "version": version,
        "group": group,
        "filter": filter_,
        "stages": stages,
        "success_threshold": success_threshold,
        "error_threshold": error_threshold,
        "min_finished": min_finished,
        "max_concurrent": max_concurrent,
        "rate": rate,
        "ramp": ramp,
        "window": window,
        "window_duration": window_duration,
        "timezone": timezone,
        "start_at": start_at,
        "retries": retries,
        "update_timeout": update_timeout,
        "dynamic": dynamic,
        "mode": mode,
        "supersede": supersede,
        "seed": seed,
    }
    with connect(server, token) as client:
        rollout = client.post("/rollouts", body)
    if json:
        print_json(rollout)
        return
    out.print(
        f"rollout {rollout['name']} created: {rollout['title']} {rollout['version']}, "
        f"stages {','.join(rollout['settings']['stages'])}; start it with "
        f"`otahub rollout start {rollout['name']}`"
    )


def _action(verb: str, path: str, done: str) -> None:
    def command(
        name: NameArg, server: Server = DEFAULT_SERVER, token: Token = None, json: Json = False
    ) -> None:
        with connect(server, token) as client:
            rollout = client.post(f"/rollouts/{name}/{path}")
        if json:
            print_json(rollout)
            return
        out.print(f"rollout {rollout['name']} {done}: {rollout['state']}")

    command.__doc__ = verb
    app.command(path)(command)


_action("Resolve the targets and run (or wait for --start-at).", "start", "started")
_action("Start nothing new; running updates go on.", "pause", "paused")
_action("Go on after a pause (the brake counts from now).", "resume", "resumed")
_action("Cancel every unfinished update and start nothing more.", "cancel", "canceled")
_action(
    "Start the failed devices again (up to --retries each); resumes.", "retry-failed", "retried"
)


@app.command("list")
def list_(server: Server = DEFAULT_SERVER, token: Token = None, json: Json = False) -> None:
    """List rollouts, newest first."""
    with connect(server, token) as client:
        rollouts = client.get("/rollouts")
    if json:
        print_json(rollouts)
        return
    if not rollouts:
        out.print("no rollouts")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("NAME", "PACKAGE", "TARGETS", "STATE", "STAGE", "DONE", "FAILED", "CREATED"):
        table.add_column(column)
    for r in rollouts:
        c = r["counts"]
        table.add_row(
            r["name"],
            f"{r['title']} {r['version']}",
            f"group {r['group']}" if r["group"] else f"filter {r['filter']}",
            r["state"],
            f"{r['stage']}/{len(r['stages'])}",
            f"{c['succeeded'] + c['skipped']}/{sum(c.values())}",
            str(c["failed"]),
            when(r["created_at"]),
        )
    out.print(table)


@app.command()
def show(
    name: NameArg,
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow it live with per-stage progress bars.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes (--watch).")] = 1.0,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """One rollout: its settings, per-stage counts, the brake's numbers and latest events."""
    with connect(server, token) as client:
        if json:
            print_json(client.get(f"/rollouts/{name}"))
            return
        if not watch:
            out.print(_render(client, name))
            return
        with Live(_render(client, name), console=out, auto_refresh=False) as live:
            while True:
                rendered, state = _render_state(client, name)
                live.update(rendered, refresh=True)
                if state in ENDED:
                    break
                try:
                    time.sleep(max(0.2, interval))
                except KeyboardInterrupt:
                    break


def _render(client: Client, name: str) -> RenderableType:
    return _render_state(client, name)[0]


def _render_state(client: Client, name: str) -> tuple[RenderableType, str]:
    r = client.get(f"/rollouts/{name}")
    events = client.get(f"/rollouts/{name}/events", limit=8)
    settings = r["settings"]
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    limits = [
        f"max {settings['max_concurrent']} at once" if settings["max_concurrent"] else None,
        f"{settings['rate_per_min'] * settings['rate_factor']:g}/min"
        if settings["rate_per_min"]
        else None,
        f"window {settings['window']} for {settings['window_duration_s']:g}s "
        f"({settings['timezone']}, {'open' if settings['window_open'] else 'closed'})"
        if settings["window"]
        else None,
    ]
    for label, value in (
        ("rollout", r["name"]),
        ("package", f"{r['title']} {r['version']} ({r['kind']})"),
        ("targets", f"group {r['group']}" if r["group"] else f"filter {r['filter']}"),
        ("state", r["state"] + (f": {r['pause_reason']}" if r["pause_reason"] else "")),
        (
            "thresholds",
            f"success {settings['success_threshold']:g}%, error {settings['error_threshold']:g}% "
            f"after {settings['min_finished']} finished",
        ),
        ("limits", ", ".join(x for x in limits if x) or "none"),
        ("owner", dash(r["owner"])),
        ("started", when(r["started_at"])),
        ("finished", when(r["finished_at"])),
    ):
        facts.add_row(label, value)
    table = Table(show_edge=False, header_style="bold")
    for column in ("STAGE", "SIZE", "PROGRESS", "DONE", "OK", "FAILED", "RUNNING", "WAITING"):
        table.add_column(column, justify="left" if column == "PROGRESS" else "right")
    for stage in r["stages"]:
        c = stage["counts"]
        size = stage["size"]
        finished = stage["succeeded"] + c["failed"] + c["canceled"]
        marker = " ▶" if stage["index"] == r["stage"] and r["state"] == "running" else ""
        table.add_row(
            f"{stage['index']} ({stage['size_given']}){marker}",
            str(size),
            ProgressBar(total=max(size, 1), completed=finished if size else 1, width=30),
            f"{100 * finished / size:.0f}%" if size else "-",
            str(stage["succeeded"]),
            f"{c['failed']} (brake {stage['brake_failed']}/{stage['brake_finished']})",
            str(c["started"]),
            str(c["waiting"]),
        )
    trail = Table(show_edge=False, header_style="bold")
    for column in ("AT", "EVENT", "MESSAGE"):
        trail.add_column(column)
    for e in events:
        trail.add_row(when(e["at"]), e["kind"], e["message"])
    state: str = r["state"]
    return Group(facts, Text(), table, Text(), trail), state
