"""apps, create, apps:destroy, apps:info, open, access, keys."""

from __future__ import annotations

import os
import sys
import webbrowser
from pathlib import Path
from typing import Annotated, Optional

import typer

from unicloud.cli import gitremote
from unicloud.cli.base import AppOpt, JsonOpt, app, app_path, resolve_app
from unicloud.cli.client import Api, q
from unicloud.cli.credentials import CliError
from unicloud.cli.output import columns, echo, header, key_values, print_json, progress, when

DEFAULT_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")


@app.command("apps")
def apps_list(as_json: JsonOpt = False):
    """List your apps."""
    apps = Api().get("/api/apps")
    if as_json:
        return print_json(apps)
    if not apps:
        echo("You have no apps. Create one with `unicloud create`.")
        return
    header("Apps")
    for a in apps:
        echo(a["name"])


@app.command("create")
def create(name: Annotated[Optional[str], typer.Argument(help="app name (generated if omitted)")] = None,
           as_json: JsonOpt = False):
    """Create an app; inside a git repository, also add the `unicloud` git remote."""
    api = Api()
    if not as_json:
        progress(f"Creating {name}" if name else "Creating app")
    try:
        created = api.post("/api/apps", {"name": name} if name else None)
    except CliError:
        if not as_json:
            echo("failed")
        raise
    if as_json:
        print_json(created)
    else:
        echo(f"done, {created['name']}" if not name else "done")
        echo(f"{created['web_url']} | {created['git_url']}")
    if gitremote.in_work_tree():
        try:
            verb = gitremote.set_remote(created["git_url"])
        except RuntimeError as exc:
            raise CliError(f"app created, but the git remote could not be set: {exc}") from None
        if not as_json:
            echo(f"Git remote {gitremote.REMOTE} {verb}")


@app.command("apps:destroy")
def destroy(name: Annotated[Optional[str], typer.Argument(help="app to destroy")] = None, app_name: AppOpt = None,
            confirm: Annotated[Optional[str], typer.Option("--confirm", help="the app name again, to confirm")] = None):
    """Permanently destroy an app: releases, images references, instances, git repository."""
    target = resolve_app(name or app_name)
    if confirm != target:
        raise CliError(f"this permanently destroys {target}; to proceed, run again with --confirm {target}")
    progress(f"Destroying {target}")
    try:
        Api().delete(app_path(target), confirm=confirm)
    except CliError:
        echo("failed")
        raise
    echo("done")
    if gitremote.in_work_tree() and gitremote.remove_remote_if(target):
        echo(f"Git remote {gitremote.REMOTE} removed")


@app.command("apps:info")
def info(app_name: AppOpt = None, as_json: JsonOpt = False):
    """Show an app's URLs, owner, release and formation."""
    data = Api().get(app_path(resolve_app(app_name)))
    if as_json:
        return print_json(data)
    header(data["name"])
    key_values([
        ("Git URL", data["git_url"]),
        ("Git HTTP URL", data["git_http_url"]),
        ("Web URL", data["web_url"]),
        ("Owner", data["owner"]),
        ("Members", ", ".join(data["members"])),
        ("Release", f"v{data['current_release']}" if data["current_release"] else "none (git push to deploy)"),
        ("Formation", " ".join(f"{k}={v}" for k, v in sorted(data["formation"].items())) or "none"),
        ("Memory", f"{data['memory_mb']} MB per instance"),
        ("Created", when(data["created_at"])),
    ])


def _browser_available() -> bool:
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@app.command("open")
def open_app(app_name: AppOpt = None):
    """Print the app's URL (and open it in a browser when there is one)."""
    data = Api().get(app_path(resolve_app(app_name)))
    echo(data["web_url"])
    if _browser_available():
        webbrowser.open(data["web_url"])


@app.command("access")
def access(app_name: AppOpt = None, as_json: JsonOpt = False):
    """List the members of an app."""
    target = resolve_app(app_name)
    members = Api().get(app_path(target, "members"))
    if as_json:
        return print_json(members)
    header(f"{target} Access List")
    columns([m["email"], m["role"]] for m in members)


@app.command("access:add")
def access_add(email: Annotated[str, typer.Argument(help="email of the user to add")], app_name: AppOpt = None):
    """Give another user access to an app."""
    target = resolve_app(app_name)
    progress(f"Adding {email} access to the app {target}")
    try:
        Api().post(app_path(target, "members"), {"email": email})
    except CliError:
        echo("failed")
        raise
    echo("done")


@app.command("keys")
def keys(as_json: JsonOpt = False):
    """List your SSH keys."""
    api = Api()
    rows = api.get("/api/keys")
    if as_json:
        return print_json(rows)
    if not rows:
        echo("You have no SSH keys. Add one with `unicloud keys:add`.")
        return
    header(f"{api.get('/api/account')['email']} Keys")
    for k in rows:
        body = k["public_key"].split()
        short = f"{body[0]} {body[1][:12]}...{body[1][-12:]}" if len(body) > 1 else k["public_key"]
        columns([[short, k["comment"], k["fingerprint"]]])


def _default_key() -> Path:
    ssh = Path.home() / ".ssh"
    for name in DEFAULT_KEYS:
        if (ssh / name).is_file():
            return ssh / name
    raise CliError(f"no public key found in {ssh} (looked for {', '.join(DEFAULT_KEYS)}); "
                   "give a path, or create one with `ssh-keygen -t ed25519`")


@app.command("keys:add")
def keys_add(path: Annotated[Optional[Path], typer.Argument(help="public key file (default: ~/.ssh/id_ed25519.pub, ...)")] = None):
    """Upload an SSH public key, so `git push` over SSH knows you."""
    path = path or _default_key()
    if path.suffix != ".pub" and path.with_suffix(path.suffix + ".pub").exists():
        raise CliError(f"{path} looks like a private key; use {path}.pub")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    if "PRIVATE KEY" in text:
        raise CliError(f"{path} is a private key: never upload it; give the matching .pub file")
    progress(f"Uploading {path} SSH key")
    try:
        key = Api().post("/api/keys", {"public_key": text})
    except CliError:
        echo("failed")
        raise
    echo("done")
    echo(key["fingerprint"])


@app.command("keys:remove")
def keys_remove(key: Annotated[str, typer.Argument(help="fingerprint (SHA256:...) or comment, e.g. you@laptop")]):
    """Remove an SSH key."""
    progress(f"Removing {key} SSH key")
    try:
        Api().delete(f"/api/keys/{q(key)}")
    except CliError:
        echo("failed")
        raise
    echo("done")
