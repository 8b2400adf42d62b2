"""logs (recent and --tail) and log drains."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Optional

import httpx
import typer

from unicloud.cli.base import AppOpt, JsonOpt, app, app_path, resolve_app
from unicloud.cli.client import Api, ApiError, parse_event_data
from unicloud.cli.credentials import CliError
from unicloud.cli.output import echo, header, print_json

SOURCES = ("app", "router", "unicloud")


def _notice(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def follow(api: Api, target: str, after: str | None, ps: str | None, source: str | None) -> None:
    """Print the live stream until Ctrl-C, resuming after the last line seen when the platform restarts."""
    last_id = after
    disconnected_at: float | None = None
    while True:
        try:
            for event_id, event, data in api.events(app_path(target, "logs", "stream"),
                                                    {"ps": ps, "source": source, "after": last_id}):
                if disconnected_at is not None:
                    _notice("unicloud: reconnected to the log stream")
                    disconnected_at = None
                if event != "log":
                    continue
                last_id = event_id or last_id
                echo(parse_event_data(data).get("text", data))
            problem = "the platform closed the log stream"
        except (httpx.TransportError, httpx.StreamError) as exc:
            problem = f"lost the log stream ({type(exc).__name__})"
        except ApiError as exc:
            if exc.status < 500:  # a bad token or a destroyed app will not fix itself
                raise
            problem = f"the platform is not ready ({exc})"
        if disconnected_at is None:
            disconnected_at = time.monotonic()
            _notice(f"unicloud: {problem}; reconnecting...")
        time.sleep(1.0)


@app.command("logs")
def logs(
    app_name: AppOpt = None,
    tail: Annotated[bool, typer.Option("-t", "--tail", help="keep following new lines until Ctrl-C")] = False,
    num: Annotated[int, typer.Option("-n", "--num", help="number of recent lines")] = 100,
    ps: Annotated[Optional[str], typer.Option("-p", "--ps", help="only this process type or instance, e.g. web or web.1")] = None,
    source: Annotated[Optional[str], typer.Option("-s", "--source", help="app, router or unicloud")] = None,
    as_json: JsonOpt = False,
):
    """Show an app's recent log lines; --tail follows the stream."""
    if source is not None and source not in SOURCES:
        raise CliError(f"unknown log source {source!r}; use one of: {', '.join(SOURCES)}")
    if not 1 <= num <= 1500:
        raise CliError("-n must be between 1 and 1500")
    target = resolve_app(app_name)
    api = Api()
    lines = api.get(app_path(target, "logs"), n=num, ps=ps, source=source)
    if as_json and not tail:
        return print_json(lines)
    for entry in lines:
        echo(entry["text"])
    if tail:
        try:
            follow(api, target, lines[-1]["id"] if lines else None, ps, source)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None


@app.command("drains")
def drains(app_name: AppOpt = None, as_json: JsonOpt = False):
    """List an app's log drains."""
    target = resolve_app(app_name)
    rows = Api().get(app_path(target, "drains"))
    if as_json:
        return print_json(rows)
    if not rows:
        echo(f"{target} has no drains")
        return
    header(f"{target} Drains")
    for d in rows:
        echo(d["url"])


@app.command("drains:add")
def drains_add(url: Annotated[str, typer.Argument(help="syslog+tcp://host:port, syslog://host:port, https://... or http://...")],
               app_name: AppOpt = None):
    """Forward an app's logs to a syslog or HTTP(S) endpoint."""
    target = resolve_app(app_name)
    drain = Api().post(app_path(target, "drains"), {"url": url})
    echo(f"Successfully added drain {drain['url']}")


@app.command("drains:remove")
def drains_remove(url: Annotated[str, typer.Argument(help="the drain URL")], app_name: AppOpt = None):
    """Stop forwarding logs to a drain."""
    target = resolve_app(app_name)
    drain = Api().delete(app_path(target, "drains"), url=url)
    echo(f"Successfully removed drain {drain['url']}")
