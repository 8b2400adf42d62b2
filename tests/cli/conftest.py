"""CLI tests run the real `unicloud` console script against a real uvicorn API server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import make_user
from tests.conftest import free_port
from unicloud.config import Settings

UNICLOUD = str(Path(sys.executable).parent / "unicloud")


def start_api(settings: Settings, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, **settings.to_env()}
    proc = subprocess.Popen([sys.executable, "-m", "unicloud.api"], env=env, stdout=open(log_path, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{settings.api_port}/api/openapi.json", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the API did not come up: {log_path.read_text()[-2000:]}")


def stop_api(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Cli:
    settings: Settings
    token: str
    home: Path
    workdir: Path
    server: subprocess.Popen
    log_path: Path
    extra_env: dict = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    def env(self, logged_in: bool = True) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UNICLOUD_", "REDIS_URL", "XDG_CONFIG"))}
        env.update(HOME=str(self.home), GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="dev@example.com",
                   GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="dev@example.com", **self.extra_env)
        if logged_in:
            env.update(UNICLOUD_API_URL=self.api_url, UNICLOUD_API_TOKEN=self.token)
        return env

    def run(self, *args: str, cwd: Path | None = None, logged_in: bool = True, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([UNICLOUD, *args], cwd=cwd or self.workdir, env=self.env(logged_in), input=input,
                              capture_output=True, text=True, timeout=timeout)

    def ok(self, *args: str, **kw) -> str:
        res = self.run(*args, **kw)
        assert res.returncode == 0, f"unicloud {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        return res.stdout

    def fails(self, *args: str, **kw) -> str:
        """Run a command that must fail with one `error: ...` line on stderr; return that line."""
        res = self.run(*args, **kw)
        assert res.returncode != 0, f"unicloud {' '.join(args)} should have failed:\n{res.stdout}"
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        return lines[0]

    def git(self, *args: str, cwd: Path) -> str:
        res = subprocess.run(["git", *args], cwd=cwd, env=self.env(), capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    def repo(self, name: str) -> Path:
        path = self.home / name
        path.mkdir()
        self.git("init", "-q", "-b", "main", cwd=path)
        return path

    def restart_server(self) -> None:
        stop_api(self.server)
        self.server = start_api(self.settings, self.log_path)


@pytest.fixture
def cli(tmp_path, redis_url) -> Cli:
    from unicloud.db.migrate import upgrade
    from unicloud.redis_client import get_redis

    settings = Settings(data_dir=tmp_path / "data", redis_url=redis_url, api_port=free_port(),
                        ssh_port=free_port(), router_port=free_port())
    upgrade(settings)
    get_redis(settings).flushdb()
    token = make_user(settings, "admin@localhost", admin=True)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    log_path = tmp_path / "api.log"
    c = Cli(settings=settings, token=token, home=home, workdir=work, server=start_api(settings, log_path),
            log_path=log_path)
    yield c
    stop_api(c.server)
