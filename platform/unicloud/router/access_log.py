"""Ship nginx's JSON access log to each app's log stream as Heroku-style `router[router]` lines."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable

from unicloud import logs

ROTATE_BYTES = 64 << 20


def _ms(value: str) -> str:
    """nginx times are seconds ("0.004"; "0.001, 0.002" after retries); Heroku prints ms."""
    parts = [p.strip() for p in value.split(",") if p.strip() and p.strip() != "-"]
    if not parts:
        return "0ms"
    try:
        return f"{round(sum(float(p) for p in parts) * 1000)}ms"
    except ValueError:
        return "0ms"


def format_line(entry: dict, dyno_by_addr: dict[str, tuple[str, str]]) -> str:
    status = entry.get("status", "")
    upstreams = [u.strip() for u in entry.get("up", "").split(",") if u.strip()]
    dyno = dyno_by_addr.get(upstreams[-1], ("", ""))[1] if upstreams else ""
    at = "info"
    extra = ""
    if status in ("502", "503", "504") and (not upstreams or dyno == ""):
        at, extra = "error", ' code=H14 desc="No web instances running"' if not upstreams else ' code=H13 desc="Connection closed without response"'
    fields = [
        f"at={at}{extra}",
        f"method={entry.get('method', '')}",
        f"path={json.dumps(entry.get('path', ''))}",
        f"host={entry.get('host', '')}",
        f"request_id={entry.get('id', '')}",
        f"fwd={json.dumps(entry.get('fwd', ''))}",
        f"dyno={dyno}",
        f"connect={_ms(entry.get('uct', ''))}",
        f"service={_ms(entry.get('rt', ''))}",
        f"status={status}",
        f"bytes={entry.get('bytes', '')}",
        f"protocol={entry.get('proto', '')}",
    ]
    return " ".join(fields)


class AccessLogShipper(threading.Thread):
    """Tails the access log from its current end; rotates it so it never grows without bound."""

    def __init__(self, path: Path, r, dyno_map: Callable[[], dict], reopen: Callable[[], None],
                 poll: float = 0.2):
        super().__init__(daemon=True, name="access-log")
        self.path, self.r, self.dyno_map, self.reopen, self.poll = Path(path), r, dyno_map, reopen, poll
        self.stopped = threading.Event()

    def _open(self, at_end: bool):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)
        f = open(self.path, "rb")
        if at_end:
            f.seek(0, os.SEEK_END)
        return f

    def run(self) -> None:
        f = self._open(at_end=True)
        buf = b""
        while not self.stopped.is_set():
            chunk = f.read(1 << 20)
            if chunk:
                buf += chunk
                lines = buf.split(b"\n")
                buf = lines.pop()
                self._ship(lines)
                continue
            try:
                if os.fstat(f.fileno()).st_size >= ROTATE_BYTES:
                    self.path.replace(self.path.with_suffix(".log.1"))
                    self.reopen()
                    self._ship(f.read().split(b"\n"))
                    f.close()
                    f, buf = self._open(at_end=False), b""
                    continue
                if not self.path.exists() or os.stat(self.path).st_ino != os.fstat(f.fileno()).st_ino:
                    f.close()
                    f, buf = self._open(at_end=False), b""
            except OSError:
                pass
            self.stopped.wait(self.poll)

    def _ship(self, lines: list[bytes]) -> None:
        dyno_by_addr = self.dyno_map()
        pipe = self.r.pipeline(transaction=False)
        n = 0
        for raw in lines:
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            app = entry.get("app")
            if not app:
                continue
            logs.emit(pipe, app, "router", "router", format_line(entry, dyno_by_addr))
            n += 1
        if n:
            try:
                pipe.execute()
            except Exception as exc:  # Redis hiccup: drop these lines rather than stop routing
                print(f"router: could not ship {n} access log lines: {exc}", flush=True)
