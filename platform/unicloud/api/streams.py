"""Server-sent event generators for app logs and build logs, shared by the API and the console.

They are plain generators (Starlette runs them in a worker thread) that wake at least every
few seconds with a keep-alive comment, so a vanished client is noticed on the next write.
"""

from __future__ import annotations

import json
import re
import time
from typing import Iterator

from unicloud import logs
from unicloud.build import log as build_log
from unicloud.config import Settings
from unicloud.db.models import Build
from unicloud.db.session import session_scope
from unicloud.api.deps import redis_for

IDLE_MS = 2000
STREAM_ID = re.compile(r"^\d+-\d+$")
BUILD_FINAL = {"succeeded", "failed"}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(data: dict | str, *, event: str | None = None, id: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data)
    out = []
    if id:
        out.append(f"id: {id}")
    if event:
        out.append(f"event: {event}")
    out.extend(f"data: {part}" for part in payload.split("\n"))
    return "\n".join(out) + "\n\n"


def resume_point(request, after: str | None) -> str:
    """Where a (re)connecting client resumes: `after`, else the `Last-Event-ID` EventSource sends."""
    from unicloud.services import ServiceError

    after = request.headers.get("last-event-id") or after or "$"  # a reconnect knows better than the URL
    if after != "$" and not STREAM_ID.match(after):
        raise ServiceError(f"invalid stream position {after!r}: use an entry id such as 1733230000000-0", 422)
    return after


def log_entry_json(entry_id: str, fields: dict) -> dict:
    return {"id": entry_id, **fields, "text": logs.format_entry(fields)}


def app_log_events(settings: Settings, app_name: str, *, after: str = "$", dyno: str | None = None,
                   source: str | None = None) -> Iterator[str]:
    r = redis_for(settings)
    if after == "$":
        # Resolve "$" now so a reconnecting client can resume exactly after the last id it saw.
        last = r.xrevrange(logs.stream_key(app_name), count=1)
        after = last[0][0] if last else "0-0"
    yield "retry: 2000\n\n"
    for entry_id, fields in logs.follow(r, app_name, after, block_ms=IDLE_MS, dyno=dyno, source=source):
        if entry_id is None:
            yield ": keep-alive\n\n"
            continue
        yield sse(log_entry_json(entry_id, fields), event="log", id=entry_id)


def live_build_lines(settings: Settings, build_id: str) -> list[str]:
    """What a running build has logged so far (the database holds the log only once it ends)."""
    r = redis_for(settings)
    return [f["line"] for _id, f in r.xrange(build_log.stream_key(build_id)) if "line" in f]


def _build_status(settings: Settings, build_id: str) -> tuple[str | None, str | None]:
    with session_scope(settings) as s:
        b = s.get(Build, build_id)
        return (b.status, b.log) if b else (None, None)


def build_log_events(settings: Settings, build_id: str) -> Iterator[str]:
    """Every line of the build from the start, then an `end` event with the final status."""
    status, stored = _build_status(settings, build_id)
    if status in BUILD_FINAL:
        for line in (stored or "").splitlines():
            yield sse({"line": line}, event="line")
        yield sse({"status": status}, event="end")
        return
    r = redis_for(settings)
    last = "0-0"
    checked = time.monotonic()
    while True:
        res = r.xread({build_log.stream_key(build_id): last}, block=IDLE_MS, count=200)
        for _key, entries in res or []:
            for entry_id, fields in entries:
                last = entry_id
                if fields.get("event") == "end":
                    yield sse({"status": fields.get("status"), "reason": fields.get("reason")}, event="end")
                    return
                yield sse({"line": fields.get("line", "")}, event="line")
        if not res:
            yield ": keep-alive\n\n"
        if time.monotonic() - checked > 5:
            # A worker that died mid-build never writes the end event: trust the database.
            checked = time.monotonic()
            status, _ = _build_status(settings, build_id)
            if status in BUILD_FINAL or status is None:
                yield sse({"status": status or "gone"}, event="end")
                return
