"""login, logout, whoami and `up` (the platform supervisor)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from unicloud.cli import credentials
from unicloud.cli.base import JsonOpt, app
from unicloud.cli.client import Api
from unicloud.cli.credentials import CliError, Credentials
from unicloud.cli.output import echo, print_json


@app.command("login")
def login(
    api_url: Annotated[Optional[str], typer.Option("--api-url", help="API base URL, e.g. http://127.0.0.1:5000")] = None,
    token: Annotated[Optional[str], typer.Option("--token", help="API token (prompted for if omitted)")] = None,
):
    """Store the API URL and token in ~/.config/unicloud/credentials.json (mode 0600)."""
    url = (api_url or credentials.default_api_url()).rstrip("/")
    if not token:
        if sys.stdin.isatty():
            token = typer.prompt("API token", hide_input=True)
        else:
            token = sys.stdin.readline()
    token = (token or "").strip()
    if not token:
        raise CliError("no token given: use --token TOKEN (the one `unicloud up` wrote to DATA_DIR/admin.token)")
    account = Api(Credentials(api_url=url, token=token)).get("/api/account")
    path = credentials.save(url, token)
    echo(f"Logged in as {account['email']} at {url} (credentials in {path})")


@app.command("logout")
def logout():
    """Forget the stored credentials."""
    echo("Logged out" if credentials.clear() else "Not logged in")


@app.command("auth:whoami")
def whoami(as_json: JsonOpt = False):
    """Show the account the current token belongs to."""
    account = Api().get("/api/account")
    if as_json:
        print_json(account)
    else:
        echo(account["email"])


@app.command("users:add")
def users_add(email: Annotated[str, typer.Argument(help="the developer's email address")], as_json: JsonOpt = False):
    """(admin) Create a user if needed and issue a new API token for them, shown once."""
    user = Api().post("/api/users", {"email": email})
    if as_json:
        print_json(user)
        return
    echo(f"Issued a token for {user['email']} (shown once; they log in with `unicloud login --token ...`):")
    echo(user["token"])


@app.command("up")
def up(
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="platform state (default ~/.local/share/unicloud)")] = None,
    bind: Annotated[Optional[str], typer.Option("--bind", help="address to listen on (default 127.0.0.1)")] = None,
    api_port: Annotated[Optional[int], typer.Option("--api-port", help="API/console/git-HTTP port (default 5000)")] = None,
    ssh_port: Annotated[Optional[int], typer.Option("--ssh-port", help="git over SSH port (default 2222)")] = None,
    router_port: Annotated[Optional[int], typer.Option("--router-port", help="app router port (default 8080)")] = None,
):
    """Run the whole platform in the foreground (Ctrl-C stops it)."""
    from unicloud.config import Settings

    settings = Settings.from_env()
    if data_dir is not None:
        settings.data_dir = data_dir.expanduser().resolve()
    for attr, value in (("bind", bind), ("api_port", api_port), ("ssh_port", ssh_port), ("router_port", router_port)):
        if value is not None:
            setattr(settings, attr, value)
    for port in (settings.api_port, settings.ssh_port, settings.router_port):
        if not 1 <= port <= 65535:
            raise CliError(f"invalid port {port}: use 1-65535")
    try:
        from unicloud.supervisor.up import run
    except ImportError as exc:
        raise CliError(f"the platform supervisor is not available in this installation ({exc})") from None
    raise typer.Exit(run(settings))


@app.command("prepare")
def prepare(cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="where kernels and build stacks are cached")] = None):
    """Build the cached kernel, init and build stack once per machine (also done by `make up`)."""
    from unicloud.config import Settings

    settings = Settings.from_env()
    if cache_dir is not None:
        settings.cache_dir = cache_dir.expanduser().resolve()
    try:
        from unicloud.supervisor.prepare import run_prepare
    except ImportError as exc:
        raise CliError(f"`prepare` is not available in this installation ({exc})") from None
    raise typer.Exit(run_prepare(settings))
