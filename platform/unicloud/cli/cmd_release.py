"""config, releases, rollback, ps, ps:scale: everything that changes or shows what runs."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer

from unicloud.cli.base import AppOpt, JsonOpt, NoWaitOpt, app, app_path, finish_release_line, resolve_app
from unicloud.cli.client import Api
from unicloud.cli.credentials import CliError
from unicloud.cli.output import ago, columns, echo, header, key_values, print_json, progress, when

CONFIG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SCALE = re.compile(r"^([a-z0-9_-]+)=(\d+)$")


def _joined(keys: list[str]) -> str:
    return ", ".join(keys)


@app.command("config")
def config(app_name: AppOpt = None, as_json: JsonOpt = False,
           shell: Annotated[bool, typer.Option("-s", "--shell", help="print KEY=value lines")] = False):
    """Show an app's config vars."""
    target = resolve_app(app_name)
    data = Api().get(app_path(target, "config"))
    if as_json:
        return print_json(data)
    if shell:
        for k, v in data.items():
            echo(f"{k}={v}")
        return
    header(f"{target} Config Vars")
    key_values(data.items())


@app.command("config:get")
def config_get(key: str, app_name: AppOpt = None):
    """Print one config var's value."""
    data = Api().get(app_path(resolve_app(app_name), "config"))
    if key not in data:
        raise CliError(f"config var {key} is not set")
    echo(data[key])


@app.command("config:set")
def config_set(pairs: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...", help="config vars to set")], app_name: AppOpt = None,
               no_wait: NoWaitOpt = False):
    """Set config vars; a deployed app restarts as a new release."""
    changes: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{pair!r} is not KEY=value")
        if not CONFIG_KEY.match(key):
            raise CliError(f"invalid config var name {key!r}: use letters, digits and _ and do not start with a digit")
        changes[key] = value
    target = resolve_app(app_name)
    api = Api()
    progress(f"Setting {_joined(list(changes))} and restarting {target}")
    try:
        result = api.patch(app_path(target, "config"), changes)
    except CliError:
        echo("failed")
        raise
    finish_release_line(api, target, result["release"], no_wait)
    key_values((k, result["config"].get(k)) for k in changes)


@app.command("config:unset")
def config_unset(keys: Annotated[list[str], typer.Argument(metavar="KEY...", help="config vars to unset")], app_name: AppOpt = None,
                 no_wait: NoWaitOpt = False):
    """Unset config vars; a deployed app restarts as a new release."""
    target = resolve_app(app_name)
    api = Api()
    progress(f"Unsetting {_joined(keys)} and restarting {target}")
    try:
        result = api.patch(app_path(target, "config"), {k: None for k in keys})
    except CliError:
        echo("failed")
        raise
    finish_release_line(api, target, result["release"], no_wait)


@app.command("releases")
def releases(app_name: AppOpt = None, as_json: JsonOpt = False,
             num: Annotated[int, typer.Option("-n", "--num", help="how many")] = 15):
    """List releases, newest first; the current one is marked."""
    target = resolve_app(app_name)
    rows = Api().get(app_path(target, "releases"), limit=num)
    if as_json:
        return print_json(rows)
    if not rows:
        echo(f"{target} has no releases yet: deploy with `git push unicloud main`")
        return
    current = next((r for r in rows if r["current"]), None)
    header(f"{target} Releases" + (f" - Current: v{current['version']}" if current else ""))
    columns([f"v{r['version']}", r["description"], r["status"], r["created_by"] or "", when(r["created_at"]),
             "(current)" if r["current"] else ""] for r in rows)


@app.command("releases:info")
def release_info(version: Annotated[str, typer.Argument(help="vN")], app_name: AppOpt = None, as_json: JsonOpt = False):
    """Show one release."""
    target = resolve_app(app_name)
    rel = Api().get(app_path(target, "releases", version))
    if as_json:
        return print_json(rel)
    header(f"Release v{rel['version']}" + (" (current)" if rel["current"] else ""))
    key_values([("Description", rel["description"]), ("Status", rel["status"]),
                ("Failure", rel["failure_reason"]), ("Commit", rel["commit"]), ("Build", rel["build_id"]),
                ("Image", rel["image"]), ("By", rel["created_by"]), ("When", when(rel["created_at"]))])


@app.command("rollback")
def rollback(version: Annotated[Optional[str], typer.Argument(help="vN to roll back to (default: the previous release)")] = None,
             app_name: AppOpt = None, no_wait: NoWaitOpt = False):
    """Release an earlier image and config again; no rebuild."""
    target = resolve_app(app_name)
    api = Api()
    progress(f"Rolling back {target}")
    try:
        release = api.post(app_path(target, "releases", "rollback"), {"version": version} if version else None)
    except CliError:
        echo("failed")
        raise
    finish_release_line(api, target, release, no_wait)
    echo(release["description"])


def _uptime(inst: dict) -> str:
    if inst["state"] == "up" and inst["uptime_seconds"] is not None:
        return f"up ({ago(inst['uptime_seconds'])})"
    if inst["exit_code"] is not None:
        return f"{inst['state']} (exit {inst['exit_code']})"
    return inst["state"]


@app.command("ps")
def ps(app_name: AppOpt = None, as_json: JsonOpt = False):
    """List an app's running instances."""
    target = resolve_app(app_name)
    api = Api()
    rows = api.get(app_path(target, "ps"))
    if as_json:
        return print_json(rows)
    if not rows:
        echo(f"No instances running for {target}")
        return
    commands = api.get(app_path(target, "formation"))["process_types"]
    for ptype in sorted({r["type"] for r in rows}):
        of_type = [r for r in rows if r["type"] == ptype]
        header(f"{ptype} ({len(of_type)}): {commands.get(ptype, '')}".rstrip(": ").rstrip())
        columns([f"{r['name']}:", _uptime(r), f"v{r['release']}" if r["release"] else "", f"host={r['host'] or '-'}",
                 f"restarts={r['restarts']}", r["id"]] for r in of_type)


@app.command("ps:scale")
def scale(pairs: Annotated[list[str], typer.Argument(metavar="TYPE=N...", help="e.g. web=2")], app_name: AppOpt = None):
    """Set how many instances of each process type run."""
    changes: dict[str, int] = {}
    for pair in pairs:
        m = SCALE.match(pair)
        if not m:
            raise CliError(f"{pair!r} is not TYPE=N (e.g. web=2)")
        changes[m.group(1)] = int(m.group(2))
    target = resolve_app(app_name)
    progress("Scaling processes")
    try:
        result = Api().patch(app_path(target, "formation"), changes)
    except CliError:
        echo("failed")
        raise
    now = ", ".join(f"{k} at {v}" for k, v in sorted(result["formation"].items()))
    echo(f"done, now running {now}")
