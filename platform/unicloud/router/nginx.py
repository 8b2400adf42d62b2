"""Run nginx as the router's child with a private prefix (config, pid, logs, temp under router_dir).

Config changes are validated with `nginx -t` before they replace the live file, and applied with
SIGHUP: nginx starts new workers with the new config while old workers finish their in-flight
requests, so a reload never drops a request. A master left behind by a router that was killed is
adopted (it is ours: found through our own pid file and config path), so a router restart does not
interrupt traffic either.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import signal
import subprocess
import tempfile
import time
from pathlib import Path

NGINX = os.environ.get("UNICLOUD_NGINX", "/usr/sbin/nginx")


class NginxError(RuntimeError):
    """nginx refused a config or could not be started."""


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(x) for x in text.split()}


def _shutting_down(pid: int) -> bool:
    """True if `pid` is gone or is an nginx worker that stopped accepting connections."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return not title or b"shutting down" in title or b"worker process" not in title


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Nginx:
    def __init__(self, router_dir: Path, binary: str = NGINX):
        self.dir = Path(router_dir)
        self.binary = binary
        self.conf = self.dir / "nginx.conf"
        self.pidfile = self.dir / "nginx.pid"
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None

    # --- filesystem ------------------------------------------------------------------------
    def worker_user(self) -> str | None:
        """Workers drop to nobody when we run as root; they must never run as root."""
        if os.geteuid() != 0:
            return None
        return "nobody nogroup"

    def temp_dir(self) -> Path:
        """Temp paths must be reachable by the worker user; a data dir under /root is not."""
        if os.geteuid() != 0:
            return self.dir / "temp"
        tag = hashlib.sha256(str(self.dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"unicloud-router-{tag}"

    def prepare(self) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        temp = self.temp_dir()
        temp.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(temp, nobody.pw_uid, nobody.pw_gid)
            os.chmod(temp, 0o700)

    def test(self, conf: Path) -> None:
        res = subprocess.run([self.binary, "-t", "-q", "-p", str(self.dir), "-c", str(conf)],
                             capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise NginxError(f"nginx rejected {conf.name}: {(res.stderr or res.stdout).strip()}")

    def install(self, text: str) -> None:
        """Validate `text` as a complete config, then atomically make it the live nginx.conf."""
        new = self.dir / "nginx.conf.new"
        new.write_text(text)
        self.test(new)
        os.replace(new, self.conf)

    # --- process ---------------------------------------------------------------------------
    def _adoptable(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if not cmdline or not cmdline[0].decode(errors="replace").startswith("nginx: master"):
            # nginx rewrites its title to "nginx: master process <binary> -p DIR -c CONF"
            return None
        title = b" ".join(cmdline).decode(errors="replace")
        return pid if str(self.conf) in title and _alive(pid) else None

    def start(self) -> str:
        """Start nginx on the installed config, or adopt a master we left running; returns which."""
        pid = self._adoptable()
        if pid:
            self.pid, self.proc = pid, None
            self.reload()
            return "adopted"
        self.proc = subprocess.Popen([self.binary, "-p", str(self.dir), "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.dir / "logs" / "error.log")
                tail = err.read_text(errors="replace")[-2000:] if err.exists() else ""
                raise NginxError(f"nginx exited with status {self.proc.returncode}: {tail.strip()}")
            if _children(self.pid):
                return "started"
            time.sleep(0.02)
        raise NginxError("nginx did not start its workers within 10s")

    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and _alive(self.pid)

    def reload(self, timeout: float = 10.0) -> None:
        """SIGHUP, then wait until the new config is the only one accepting connections.

        The master starts new workers, then asks the old ones to shut down gracefully; an old
        worker retitles itself "worker process is shutting down" right before it closes its
        listening sockets, and then only finishes the requests it already has. So once every old
        worker has that title (or is gone), each new connection gets the new config."""
        if not self.pid or not self.running():
            raise NginxError("nginx is not running")
        before = _children(self.pid)
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = _children(self.pid)
            if now - before and all(_shutting_down(pid) for pid in before & now):
                return
            time.sleep(0.005)
        raise NginxError("nginx did not switch to the new config after SIGHUP (see router/logs/error.log)")

    def reopen_logs(self) -> None:
        if self.pid and self.running():
            os.kill(self.pid, signal.SIGUSR1)

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful quit: workers finish in-flight requests first."""
        if not self.pid or not self.running():
            return
        os.kill(self.pid, signal.SIGQUIT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            time.sleep(0.05)
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=5)
