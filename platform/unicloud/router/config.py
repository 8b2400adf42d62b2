"""Render the routing table into a complete nginx.conf (Jinja2), with its own pid/log/temp paths."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from unicloud.config import Settings
from unicloud.router.table import RoutingTable

_env = Environment(loader=PackageLoader("unicloud.router", "templates"), undefined=StrictUndefined,
                   keep_trailing_newline=True, autoescape=False)

NOT_FOUND = """<!DOCTYPE html><html><head><title>No such app</title></head><body>
<h1>No such app</h1><p>There is no app at this address. Check the app name in the URL (<code>NAME.{domain}</code>)
or list your apps with <code>unicloud apps</code>.</p></body></html>"""

UNAVAILABLE = """<!DOCTYPE html><html><head><title>Application unavailable</title></head><body>
<h1>Application unavailable</h1><p>{name} has no running instance that can serve this request right now.
If you own it, see <code>unicloud ps -a {name}</code> and <code>unicloud logs -a {name}</code>.</p></body></html>"""


def _nginx_string(text: str) -> str:
    """Content for a single-quoted nginx string: no quotes or backslashes to break out of it."""
    return text.replace("\\", "&#92;").replace("'", "&#39;").replace("\n", " ")


def listen_address(bind: str, port: int) -> str:
    return f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"


@dataclass
class RenderOptions:
    workers: str = os.environ.get("UNICLOUD_ROUTER_WORKERS", "auto")
    connect_timeout: str = "2s"
    read_timeout: str = os.environ.get("UNICLOUD_ROUTER_TIMEOUT", "60s")
    next_upstream_tries: int = 3
    user: str | None = None  # worker user when the master runs as root
    temp_dir: Path | None = None


def render(settings: Settings, table: RoutingTable, opts: RenderOptions | None = None) -> str:
    table.validate()
    opts = opts or RenderOptions()
    rdir = settings.router_dir
    apps = [
        {"name": name, "backends": backends,
         "unavailable_page": _nginx_string(UNAVAILABLE.format(name=html.escape(name)))}
        for name, backends in sorted(table.apps.items())
    ]
    return _env.get_template("nginx.conf.j2").render(
        version=table.version,
        user=opts.user,
        workers=opts.workers,
        dir=str(rdir),
        temp=str(opts.temp_dir or rdir / "temp"),
        listen=listen_address(settings.bind, settings.router_port),
        domain=settings.domain,
        connect_timeout=opts.connect_timeout,
        read_timeout=opts.read_timeout,
        next_upstream_tries=opts.next_upstream_tries,
        not_found_page=_nginx_string(NOT_FOUND.format(domain=html.escape(settings.domain))),
        apps=apps,
    )
