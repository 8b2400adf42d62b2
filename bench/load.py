"""A bounded, single-connection-at-a-time load loop against loopback, run in a thread while a
deploy or rollback happens, counting every request that did not get a 200."""

from __future__ import annotations

import http.client
import threading
import time


class LoadLoop(threading.Thread):
    def __init__(self, port: int, host_header: str | None = None, *, max_seconds: float = 900,
                 timeout: float = 10.0, pause: float = 0.02):
        super().__init__(daemon=True)
        self.port, self.host_header = port, host_header
        self.max_seconds, self.timeout, self.pause = max_seconds, timeout, pause
        self.ok = 0
        self.failed = 0
        self.failures: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.max_seconds
        headers = {"Host": self.host_header} if self.host_header else {}
        while not self._stop_event.is_set() and time.monotonic() < end:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                conn.request("GET", "/", headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.ok += 1
                else:
                    self._fail(f"HTTP {resp.status}")
            except (OSError, http.client.HTTPException) as e:
                self._fail(type(e).__name__)
            finally:
                conn.close()
            time.sleep(self.pause)

    def _fail(self, what: str) -> None:
        self.failed += 1
        if len(self.failures) < 20:
            self.failures.append(what)

    def stop(self) -> "LoadLoop":
        self._stop_event.set()
        self.join(self.timeout + 5)
        return self

    @property
    def total(self) -> int:
        return self.ok + self.failed

    def describe(self) -> str:
        kinds = sorted(set(self.failures))
        return f"{self.failed} of {self.total} failed" + (f" ({', '.join(kinds)})" if kinds else "")
