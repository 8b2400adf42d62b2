"""Shared fixtures: a private redis-server, migrated settings in a temp dir, a real `unicloud up`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port
from unicloud.config import Settings

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A throwaway redis-server on a free loopback port (no persistence)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    for _ in range(100):
        try:
            if redis.Redis.from_url(url).ping():
                break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def settings(tmp_path, redis_url, monkeypatch) -> Settings:
    """Settings for one test: its own data dir and database, the shared Redis, free ports."""
    from unicloud.db.migrate import upgrade

    s = Settings(data_dir=tmp_path / "data", redis_url=redis_url, api_port=free_port(),
                 ssh_port=free_port(), router_port=free_port())
    s.cache_dir = Settings.from_env().cache_dir  # kernels and stacks are shared per machine
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    upgrade(s)
    return s


@dataclass
class RunningPlatform:
    settings: Settings
    proc: subprocess.Popen
    token: str
    ready_line: str

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    def cli_env(self, home: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(UNICLOUD_API_URL=self.api_url, UNICLOUD_API_TOKEN=self.token)
        if home is not None:
            env["HOME"] = str(home)
        return env

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_platform(data_dir: Path, *, ports: tuple[int, int, int] | None = None,
                   processes: str | None = None, timeout: float = 240) -> RunningPlatform:
    """Run the real `unicloud up` as a user would and wait for its ready line."""
    api, ssh, router = ports or (free_port(), free_port(), free_port())
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    if processes:
        env["UNICLOUD_PROCESSES"] = processes
    log = open(data_dir.parent / f"{data_dir.name}-up.stderr", "ab")
    proc = subprocess.Popen(
        [str(VENV_BIN / "unicloud"), "up", "--data-dir", str(data_dir), "--api-port", str(api),
         "--ssh-port", str(ssh), "--router-port", str(router)],
        stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    line = ""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if sel.select(timeout=0.5):
            line = proc.stdout.readline().strip()
            if line.startswith("unicloud ready"):
                break
    sel.close()
    if not line.startswith("unicloud ready"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"unicloud up did not become ready: {(data_dir.parent / f'{data_dir.name}-up.stderr').read_text()[-3000:]}")
    s = Settings(data_dir=data_dir, api_port=api, ssh_port=ssh, router_port=router)
    s.cache_dir = Settings.from_env().cache_dir
    token = (data_dir / "admin.token").read_text().strip()
    return RunningPlatform(settings=s, proc=proc, token=token, ready_line=line)


@pytest.fixture
def platform_factory(tmp_path):
    started: list[RunningPlatform] = []

    def factory(**kwargs) -> RunningPlatform:
        p = start_platform(tmp_path / "data", **kwargs)
        started.append(p)
        return p

    yield factory
    for p in started:
        p.stop()
