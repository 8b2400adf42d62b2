"""End-to-end fixtures: one real `unicloud up` per module, a developer with an SSH key and a
git checkout of a sample app, all driven through the CLI and `git push` like a user would."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningPlatform, start_platform

APPS = Path(__file__).resolve().parents[1] / "apps"
UNICLOUD = str(Path(sys.executable).parent / "unicloud")


@dataclass
class Developer:
    platform: RunningPlatform
    home: Path
    key: Path

    @property
    def env(self) -> dict[str, str]:
        env = self.platform.cli_env(self.home)
        env["GIT_SSH_COMMAND"] = (f"ssh -i {self.key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
                                  "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
        env.update(GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="dev@example.com",
                   GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="dev@example.com")
        return env

    def cli(self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        res = subprocess.run([UNICLOUD, *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"unicloud {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def git(self, *args: str, cwd: Path, check: bool = True, timeout: float = 1200) -> subprocess.CompletedProcess:
        res = subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def checkout(self, sample: str, dest: Path) -> Path:
        shutil.copytree(APPS / sample, dest)
        self.git("init", "-q", "-b", "main", cwd=dest)
        self.git("add", "-A", cwd=dest)
        self.git("commit", "-qm", f"{sample} sample", cwd=dest)
        return dest

    def get(self, app: str, path: str = "/", timeout: float = 10) -> httpx.Response:
        s = self.platform.settings
        return httpx.get(f"http://127.0.0.1:{s.router_port}{path}", headers={"Host": f"{app}.{s.domain}"}, timeout=timeout)

    def wait_for_body(self, app: str, needle: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        body = ""
        while time.monotonic() < deadline:
            try:
                r = self.get(app)
                body = r.text
                if r.status_code == 200 and needle in body:
                    return body
            except httpx.HTTPError as exc:
                body = str(exc)
            time.sleep(0.5)
        raise AssertionError(f"{app} never served {needle!r}; last answer: {body[:300]}")


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    data = tmp_path_factory.mktemp("platform") / "data"
    p = start_platform(data)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def developer(platform, tmp_path_factory) -> Developer:
    home = tmp_path_factory.mktemp("home")
    key = home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev@example.com", "-f", str(key)], check=True)
    dev = Developer(platform=platform, home=home, key=key)
    dev.cli("keys:add", str(key) + ".pub")
    return dev
