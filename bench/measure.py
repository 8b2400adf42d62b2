"""Small, bounded measuring tools shared by the benchmarks: free ports, first-200 polling,
process RSS, and a process handle that is always killed by its own PID."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(port: int, path: str = "/", timeout: float = 2.0, host: str = "127.0.0.1",
                headers: dict | None = None) -> int | None:
    """The status of one GET to loopback, or None when nothing answered."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_for_200(port: int, started: float, *, timeout: float, proc: subprocess.Popen | None = None,
                 interval: float = 0.02, headers: dict | None = None) -> float:
    """Seconds from `started` (a time.monotonic() value) to the first HTTP 200 on the port.

    Raises TimeoutError after `timeout` seconds, RuntimeError if `proc` exits first."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before serving")
        if http_status(port, timeout=1.0, headers=headers) == 200:
            return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"no HTTP 200 on 127.0.0.1:{port} within {timeout:.0f} s")


def rss_mb(pid: int) -> float:
    """Resident set size of one process in MB (10^6 bytes), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Proc:
    """A child in its own session; `stop()` ends it (and its group) by PID, TERM then KILL."""

    def __init__(self, argv: list[str], *, env: dict | None = None, cwd: Path | None = None,
                 log: Path | None = None):
        self.log_file = open(log, "wb") if log else subprocess.DEVNULL
        self.started = time.monotonic()
        self.popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log_file,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, grace: float = 5.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(10)
        if self.log_file is not subprocess.DEVNULL:
            self.log_file.close()

    def __enter__(self) -> "Proc":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def mb(path: Path) -> float:
    return path.stat().st_size / 1e6
