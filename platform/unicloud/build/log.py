"""Build logs as a bounded Redis stream, so the git receiver and the console can tail them live."""

from __future__ import annotations

import time
from typing import Iterator

import redis

MAX_BUILD_LOG_LINES = 20_000


def stream_key(build_id: str) -> str:
    return f"build:{build_id}:log"


class BuildLog:
    """Writer: keeps the full text for the database and streams each line to Redis."""

    def __init__(self, r: redis.Redis, build_id: str):
        self.r = r
        self.build_id = build_id
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        for part in str(line).splitlines() or [""]:
            self.lines.append(part)
            self.r.xadd(stream_key(self.build_id), {"line": part}, maxlen=MAX_BUILD_LOG_LINES, approximate=True)

    def end(self, status: str, *, reason: str = "", release_id: int | None = None) -> None:
        fields = {"event": "end", "status": status, "reason": reason, "release_id": str(release_id or "")}
        self.r.xadd(stream_key(self.build_id), fields, maxlen=MAX_BUILD_LOG_LINES, approximate=True)
        self.r.expire(stream_key(self.build_id), 86400)

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


def follow(r: redis.Redis, build_id: str, *, timeout: float, idle: float = 1.0) -> Iterator[dict]:
    """Yield stream entries from the start until the end event (inclusive) or the timeout."""
    last = "0-0"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = r.xread({stream_key(build_id): last}, block=int(idle * 1000), count=200)
        if not res:
            yield {}  # heartbeat: lets callers notice a vanished client
            continue
        for _key, entries in res:
            for entry_id, fields in entries:
                last = entry_id
                yield fields
                if fields.get("event") == "end":
                    return
    raise TimeoutError(f"build {build_id} produced no end event within {timeout:.0f}s")
