"""Log drains: forward each app's log stream to syslog over TCP or to an HTTPS endpoint.

Frames are RFC 5424 syslog messages with RFC 6587 octet counting, which is also the body format
of Heroku's HTTPS drains (`application/logplex-1`), so existing drain receivers understand them.
Each drain keeps its own cursor in Redis: a receiver that is down gets the backlog (bounded by the
stream's retention) when it comes back, and nothing is sent twice after a successful delivery.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import redis
from sqlalchemy import select

from unicloud.config import Settings
from unicloud.logs import stream_key

BATCH = 500
# Heroku's syslog facility/severity for app logs: user-level (1), info (6).
PRI = 1 * 8 + 6


class DrainError(Exception):
    pass


def syslog_frame(app: str, fields: dict) -> bytes:
    """One octet-counted RFC 5424 message: `<PRI>1 TS HOST APP PROCID - - MSG`."""
    msg = f"<{PRI}>1 {fields['ts']} {app} {fields['source']} {fields['dyno']} - - {fields['line']}".encode()
    return str(len(msg)).encode() + b" " + msg


def deliver(url: str, app: str, entries: list[dict], *, timeout: float = 5.0) -> None:
    payload = b"".join(syslog_frame(app, f) for f in entries)
    parts = urlsplit(url)
    if parts.scheme in ("syslog", "syslog+tcp"):
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
            sock.sendall(payload)
        return
    resp = httpx.post(url, content=payload, timeout=timeout, headers={
        "Content-Type": "application/logplex-1",
        "Logplex-Msg-Count": str(len(entries)),
        "Logplex-Frame-Id": f"{app}-{entries[-1].get('ts', '')}",
        "User-Agent": "unicloud-drain/1",
    })
    if resp.status_code >= 300:
        raise DrainError(f"{url} answered HTTP {resp.status_code}")


@dataclass
class Drain:
    id: int
    app: str
    url: str


def load_drains(settings: Settings) -> list[Drain]:
    from unicloud.db.models import App, LogDrain
    from unicloud.db.session import session_scope

    with session_scope(settings) as s:
        rows = s.execute(select(LogDrain.id, App.name, LogDrain.url).join(App, App.id == LogDrain.app_id)).all()
    return [Drain(*row) for row in rows]


def cursor_key(drain_id: int) -> str:
    return f"drain:{drain_id}:cursor"


def pump_once(r: redis.Redis, drain: Drain) -> int:
    """Deliver what the drain has not seen yet; returns the number of lines delivered."""
    cursor = r.get(cursor_key(drain.id))
    if cursor is None:
        # A new drain starts at the current end of the stream, like Heroku's.
        last = r.xrevrange(stream_key(drain.app), count=1)
        cursor = last[0][0] if last else "0-0"
        r.set(cursor_key(drain.id), cursor)
    entries = r.xrange(stream_key(drain.app), min=f"({cursor}", count=BATCH)
    if not entries:
        return 0
    deliver(drain.url, drain.app, [fields for _id, fields in entries])
    r.set(cursor_key(drain.id), entries[-1][0])
    return len(entries)


class DrainForwarder(threading.Thread):
    """Runs inside a long-lived platform process; one pass every `interval` seconds."""

    def __init__(self, settings: Settings, interval: float = 1.0):
        super().__init__(daemon=True, name="log-drains")
        self.settings, self.interval = settings, interval
        self.stopped = threading.Event()
        self.backoff: dict[int, float] = {}

    def run(self) -> None:
        from unicloud.redis_client import get_redis

        r = get_redis(self.settings)
        while not self.stopped.is_set():
            try:
                self.pass_once(r)
            except Exception as exc:  # keep forwarding; the error is transient (DB/Redis restart)
                print(f"log-drains: {exc}", flush=True)
            self.stopped.wait(self.interval)

    def pass_once(self, r: redis.Redis) -> int:
        sent = 0
        now = time.monotonic()
        for drain in load_drains(self.settings):
            if self.backoff.get(drain.id, 0) > now:
                continue
            try:
                while (n := pump_once(r, drain)) > 0:
                    sent += n
                self.backoff.pop(drain.id, None)
            except (OSError, httpx.HTTPError, DrainError) as exc:
                self.backoff[drain.id] = now + 10
                print(f"log-drains: {drain.url} for {drain.app}: {exc}; retrying in 10s", flush=True)
        return sent
