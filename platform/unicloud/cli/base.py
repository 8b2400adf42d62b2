"""The Typer application, shared options and the helpers every command uses."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Optional

import typer

from unicloud.cli import gitremote
from unicloud.cli.client import Api, q
from unicloud.cli.credentials import CliError


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


class UnicloudTyper(typer.Typer):
    """Every failure, usage errors included, is one `error: ...` line on stderr; never a traceback."""

    def __call__(self, *args, **kwargs):
        kwargs.setdefault("standalone_mode", False)
        try:
            rv = super().__call__(*args, **kwargs)
        except CliError as exc:
            _fail(str(exc), 1)
        except typer.TyperException as exc:  # Typer's (vendored click) usage and parameter errors
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None and exc.exit_code == 2 else ""
            _fail(exc.format_message() + hint, exc.exit_code)
        except typer.Abort:
            _fail("aborted", 1)
        except BrokenPipeError:  # `unicloud logs | head`
            sys.stderr.close()
            sys.exit(0)
        sys.exit(rv if isinstance(rv, int) else 0)


app = UnicloudTyper(
    name="unicloud",
    help="unicloud: git push your app, get a minimal VM image, run it. Heroku-style commands.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

AppOpt = Annotated[Optional[str], typer.Option("-a", "--app", help="app name (default: from the `unicloud` git remote)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON instead of text")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="do not wait for the new release to deploy")]

DEPLOY_TIMEOUT = float(os.environ.get("UNICLOUD_DEPLOY_TIMEOUT", "600"))


def resolve_app(name: str | None) -> str:
    if name:
        return name
    inferred = gitremote.app_from_remote()
    if inferred:
        return inferred
    raise CliError("no app specified: use -a NAME, or run inside a git repository with a `unicloud` remote (see `unicloud create`)")


def app_path(name: str, *rest: str) -> str:
    return "/".join([f"/api/apps/{q(name)}", *rest]).rstrip("/")


def wait_for_release(api: Api, app_name: str, version: int) -> dict:
    """Poll until the scheduler has deployed (or failed to deploy) release `version`."""
    deadline = time.monotonic() + DEPLOY_TIMEOUT
    delay = 0.3
    while True:
        rel = api.get(app_path(app_name, "releases", f"v{version}"))
        if rel["status"] in ("succeeded", "failed"):
            return rel
        if time.monotonic() > deadline:
            raise CliError(f"v{version} of {app_name} is still {rel['status']} after {DEPLOY_TIMEOUT:.0f}s; "
                           "see `unicloud releases` and `unicloud logs`")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


def finish_release_line(api: Api, app_name: str, release: dict | None, no_wait: bool) -> None:
    """End a `Doing X... ` line with `done, vN` once vN is live, or fail loudly."""
    if release is None:
        typer.echo("done")
        return
    version = release["version"]
    if no_wait:
        typer.echo(f"done, v{version} (deploying)")
        return
    final = wait_for_release(api, app_name, version)
    if final["status"] != "succeeded":
        typer.echo(f"failed, v{version}")
        reason = final.get("failure_reason") or "see `unicloud logs`"
        raise CliError(f"v{version} failed to deploy: {reason}")
    typer.echo(f"done, v{version}")
