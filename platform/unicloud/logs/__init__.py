"""App log streams: one bounded Redis stream per app, in Heroku's line format.

Every producer (agent consoles, router access log, API and scheduler events, builds) calls
`emit`; readers (`unicloud logs`, the console's SSE endpoint, drains) read the same stream.
"""

from __future__ import annotations

import datetime as dt
import os
import re

import redis

DEFAULT_RETENTION = int(os.environ.get("UNICLOUD_LOG_RETENTION", "10000"))
MAX_LINE_CHARS = 10_000
SOURCES = ("app", "router", "unicloud")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def stream_key(app: str) -> str:
    return f"logs:{app}"


def sanitize(line: str | bytes) -> str:
    """Make arbitrary VM output safe to store and print: text only, no control bytes, bounded."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.rstrip("\r\n")
    line = _CONTROL.sub("\ufffd", line)
    if len(line) > MAX_LINE_CHARS:
        line = line[:MAX_LINE_CHARS] + " [truncated]"
    return line


def emit(r: redis.Redis, app: str, source: str, dyno: str, line: str | bytes,
         *, retention: int = DEFAULT_RETENTION, ts: dt.datetime | None = None) -> str:
    """Append one line. `source` is app|router|unicloud; `dyno` is e.g. web.1, router, api."""
    if source not in SOURCES:
        raise ValueError(f"unknown log source {source!r}")
    ts = ts or dt.datetime.now(dt.timezone.utc)
    fields = {"ts": ts.isoformat(timespec="microseconds"), "source": source, "dyno": dyno, "line": sanitize(line)}
    return r.xadd(stream_key(app), fields, maxlen=retention, approximate=False)


def format_entry(fields: dict) -> str:
    """`2026-12-03T12:00:00.123456+00:00 app[web.1]: ...` exactly like Heroku."""
    return f"{fields['ts']} {fields['source']}[{fields['dyno']}]: {fields['line']}"


def matches(fields: dict, *, dyno: str | None = None, source: str | None = None) -> bool:
    if source and fields.get("source") != source:
        return False
    if dyno and fields.get("dyno") != dyno and not fields.get("dyno", "").startswith(dyno + "."):
        return False
    return True


def recent(r: redis.Redis, app: str, n: int = 100, *, dyno: str | None = None,
           source: str | None = None) -> list[tuple[str, dict]]:
    """The last `n` matching entries, oldest first."""
    out: list[tuple[str, dict]] = []
    last = "+"
    while len(out) < n:
        batch = r.xrevrange(stream_key(app), max=last, count=max(200, n))
        if not batch:
            break
        for entry_id, fields in batch:
            if entry_id == last:
                continue
            if matches(fields, dyno=dyno, source=source):
                out.append((entry_id, fields))
                if len(out) >= n:
                    break
        if len(batch) < max(200, n):
            break
        last = batch[-1][0]
    out.reverse()
    return out


def follow(r: redis.Redis, app: str, after: str = "$", *, block_ms: int = 5000,
           dyno: str | None = None, source: str | None = None):
    """Yield (id, fields) forever from `after`; yields (None, None) on idle so callers can check liveness.

    "$" is resolved to the stream's current end right away, not at the first read, so nothing
    emitted between this call and the first `next()` is missed.
    """
    if after == "$":
        newest = r.xrevrange(stream_key(app), count=1)
        after = newest[0][0] if newest else "0-0"
    return _follow(r, app, after, block_ms, dyno, source)


def _follow(r, app, last, block_ms, dyno, source):
    while True:
        res = r.xread({stream_key(app): last}, block=block_ms, count=500)
        if not res:
            yield None, None
            continue
        for _key, entries in res:
            for entry_id, fields in entries:
                last = entry_id
                if matches(fields, dyno=dyno, source=source):
                    yield entry_id, fields
