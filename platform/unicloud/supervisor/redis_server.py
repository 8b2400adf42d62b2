"""The platform's private redis-server: loopback only, password-protected, persistent in DIR/redis."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _password(redis_dir: Path) -> str:
    path = redis_dir / "password"
    if path.exists():
        return path.read_text().strip()
    pw = secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(pw)
    return pw


class PrivateRedis:
    def __init__(self, data_dir: Path):
        self.dir = data_dir / "redis"
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None

    def start(self, log_file, preexec_fn=None, timeout: float = 20.0) -> str:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError("redis-server is not installed: run `make up` (it installs Debian's redis-server) or set REDIS_URL")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        password = _password(self.dir)
        port = free_port()
        conf = self.dir / "redis.conf"
        conf.write_text(
            "# written by unicloud up; edits are overwritten\n"
            f"bind 127.0.0.1\nport {port}\nprotected-mode yes\n"
            f"requirepass {password}\n"
            f"unixsocket {self.dir / 'redis.sock'}\nunixsocketperm 700\n"
            f"dir {self.dir}\ndbfilename dump.rdb\nappendonly yes\nappendfsync everysec\n"
            "save 60 1\ndaemonize no\nloglevel notice\n"
        )
        os.chmod(conf, 0o600)
        self.proc = subprocess.Popen([binary, str(conf)], stdout=log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
        self.url = f"redis://:{password}@127.0.0.1:{port}/0"
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {log_file.name}")
            try:
                if client.ping():
                    # Wait until the AOF/RDB is loaded so children never see LOADING errors.
                    while client.info("persistence").get("loading"):
                        time.sleep(0.1)
                    return self.url
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not become ready in time")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            redis.Redis.from_url(self.url, socket_connect_timeout=1).shutdown(save=True)
        except Exception:
            self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
