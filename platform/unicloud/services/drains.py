"""Log drains: where an app's log stream is forwarded (syslog over TCP/UDP or HTTP(S) POST)."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from unicloud.db.models import App, LogDrain
from unicloud.services import Conflict, NotFound, ServiceError

DRAIN_SCHEMES = ("syslog+tcp", "syslog", "https", "http")
MAX_DRAINS_PER_APP = 5


def validate_drain_url(url: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ServiceError("a drain URL is required, e.g. syslog+tcp://logs.example.com:514", 422)
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ServiceError(f"invalid drain URL {url!r}: {exc}", 422) from None
    if parts.scheme not in DRAIN_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in DRAIN_SCHEMES)
        raise ServiceError(f"unsupported drain URL {url!r}: the scheme must be one of {allowed}", 422)
    if not parts.hostname:
        raise ServiceError(f"invalid drain URL {url!r}: it has no host", 422)
    if parts.scheme.startswith("syslog") and port is None:
        raise ServiceError(f"invalid drain URL {url!r}: syslog drains need a port, e.g. {parts.scheme}://{parts.hostname}:514", 422)
    if len(url) > 1024:
        raise ServiceError("drain URL is longer than 1024 characters", 422)
    return url


def list_drains(session: Session, app: App) -> list[LogDrain]:
    return list(session.scalars(select(LogDrain).where(LogDrain.app_id == app.id).order_by(LogDrain.id)))


def add_drain(session: Session, app: App, url: str) -> LogDrain:
    url = validate_drain_url(url)
    drains = list_drains(session, app)
    if any(d.url == url for d in drains):
        raise Conflict(f"{app.name} already drains to {url}")
    if len(drains) >= MAX_DRAINS_PER_APP:
        raise ServiceError(f"{app.name} already has {MAX_DRAINS_PER_APP} drains; remove one first", 409)
    drain = LogDrain(app_id=app.id, url=url)
    session.add(drain)
    session.flush()
    return drain


def remove_drain(session: Session, app: App, url: str) -> LogDrain:
    for drain in list_drains(session, app):
        if drain.url == url.strip() or str(drain.id) == url.strip():
            session.delete(drain)
            session.flush()
            return drain
    raise NotFound(f"{app.name} has no drain {url!r}; see `unicloud drains`")
