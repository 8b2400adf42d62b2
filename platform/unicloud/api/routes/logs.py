"""App logs (recent lines and a live SSE stream) and log drains."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from unicloud import logs
from unicloud.api.deps import authorize_app, bearer_token, get_session, get_settings, member_app
from unicloud.api.serializers import drain_json
from unicloud.api.streams import SSE_HEADERS, app_log_events, log_entry_json, resume_point
from unicloud.config import Settings
from unicloud.db.models import App
from unicloud.api.deps import redis_for
from unicloud.services import ServiceError, drains as drain_service

router = APIRouter(prefix="/api/apps/{name}")
MAX_LINES = 1500
PS_FILTER = re.compile(r"^[a-z0-9_-]{1,32}(\.\d{1,4})?$")


class DrainAdd(BaseModel):
    url: str


def log_filters(ps: str | None, source: str | None) -> tuple[str | None, str | None]:
    if source is not None and source not in logs.SOURCES:
        raise ServiceError(f"unknown log source {source!r}; use one of: {', '.join(logs.SOURCES)}", 422)
    if ps is not None and not PS_FILTER.match(ps):
        raise ServiceError(f"invalid process filter {ps!r}; use a type or an instance, e.g. web or web.1", 422)
    return ps or None, source or None


@router.get("/logs", tags=["logs"])
def recent_logs(n: int = 100, ps: str | None = None, source: str | None = None, app: App = Depends(member_app),
                settings: Settings = Depends(get_settings)) -> list[dict]:
    """The last `n` lines, oldest first; `ps` is web or web.1, `source` app|router|unicloud."""
    if not 1 <= n <= MAX_LINES:
        raise ServiceError(f"n must be between 1 and {MAX_LINES}", 422)
    dyno, source = log_filters(ps, source)
    entries = logs.recent(redis_for(settings), app.name, n, dyno=dyno, source=source)
    return [log_entry_json(entry_id, fields) for entry_id, fields in entries]


@router.get("/logs/stream", tags=["logs"])
def stream_logs(name: str, request: Request, after: str | None = None, ps: str | None = None,
                source: str | None = None, settings: Settings = Depends(get_settings)):
    """Server-sent events (`event: log`, `id:` = stream id; resume with `Last-Event-ID` or `after`)."""
    app_name = authorize_app(settings, bearer_token(request), name)
    dyno, source = log_filters(ps, source)
    start = resume_point(request, after)
    redis_for(settings).ping()  # fail with a JSON error now rather than mid-stream
    return StreamingResponse(app_log_events(settings, app_name, after=start, dyno=dyno, source=source),
                             media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/drains", tags=["drains"])
def list_drains(app: App = Depends(member_app), session: Session = Depends(get_session, scope="function")) -> list[dict]:
    return [drain_json(d) for d in drain_service.list_drains(session, app)]


@router.post("/drains", status_code=201, tags=["drains"])
def add_drain(body: DrainAdd, app: App = Depends(member_app), session: Session = Depends(get_session, scope="function")) -> dict:
    return drain_json(drain_service.add_drain(session, app, body.url))


@router.delete("/drains", tags=["drains"])
def remove_drain(url: str, app: App = Depends(member_app), session: Session = Depends(get_session, scope="function")) -> dict:
    return drain_json(drain_service.remove_drain(session, app, url))
