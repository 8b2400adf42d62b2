"""A private, real `unicloud up` and a developer who drives it with the CLI and `git push` over
SSH, for the benchmarks that need the whole platform (deploy, rollback)."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.measure import free_port, http_status

VENV_BIN = Path(sys.executable).parent
UNICLOUD = str(VENV_BIN / "unicloud")


@dataclass
class Platform:
    data_dir: Path
    proc: subprocess.Popen
    api_port: int
    ssh_port: int
    router_port: int
    token: str
    home: Path
    key: Path
    domain: str = "localhost"

    @classmethod
    def start(cls, root: Path, *, extra_env: dict | None = None, timeout: float = 300) -> "Platform":
        data = root / "data"
        api, ssh, router = free_port(), free_port(), free_port()
        env = dict(os.environ, **(extra_env or {}))
        env.pop("REDIS_URL", None)
        stderr = open(root / "up.stderr", "ab")
        proc = subprocess.Popen(
            [UNICLOUD, "up", "--data-dir", str(data), "--api-port", str(api), "--ssh-port", str(ssh),
             "--router-port", str(router)],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, start_new_session=True)
        stderr.close()
        deadline = time.monotonic() + timeout
        line = ""
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if sel.select(timeout=0.5):
                    line = proc.stdout.readline().strip()
                    if line.startswith("unicloud ready"):
                        break
        finally:
            sel.close()
        if not line.startswith("unicloud ready"):
            _stop_group(proc, 10)
            tail = (root / "up.stderr").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"unicloud up did not become ready in {timeout:.0f} s: {tail}")
        home = root / "home"
        home.mkdir()
        key = home / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        p = cls(data, proc, api, ssh, router, (data / "admin.token").read_text().strip(), home, key)
        p.cli("keys:add", str(key) + ".pub")
        return p

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, UNICLOUD_API_URL=f"http://127.0.0.1:{self.api_port}",
                   UNICLOUD_API_TOKEN=self.token, HOME=str(self.home),
                   GIT_SSH_COMMAND=(f"ssh -i {self.key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
                                    "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"),
                   GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.test",
                   GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.test")
        env.pop("REDIS_URL", None)
        return env

    def cli(self, *args: str, cwd: Path | None = None, timeout: float = 300) -> str:
        res = subprocess.run([UNICLOUD, *args], cwd=cwd, env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"unicloud {' '.join(args)} failed: {(res.stderr or res.stdout).strip()[-500:]}")
        return res.stdout

    def git(self, *args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
        res = subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {(res.stderr or res.stdout).strip()[-500:]}")
        return res

    def status(self, app: str) -> int | None:
        return http_status(self.router_port, headers={"Host": f"{app}.{self.domain}"})

    def body(self, app: str) -> str | None:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.router_port, timeout=5)
        try:
            conn.request("GET", "/", headers={"Host": f"{app}.{self.domain}"})
            resp = conn.getresponse()
            data = resp.read().decode(errors="replace")
            return data if resp.status == 200 else None
        except OSError:
            return None
        finally:
            conn.close()

    def stop(self) -> None:
        _stop_group(self.proc, 90)
        # VMs whose QEMU outlived the supervisor are ours: they sit under our own data dir.
        for pidfile in self.data_dir.glob("vms/*/*/qemu.pid"):
            try:
                pid = int(pidfile.read_text().strip())
                if str(self.data_dir) in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass


def _stop_group(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def checkout(platform: Platform, source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
    platform.git("init", "-q", "-b", "main", cwd=dest)
    platform.git("add", "-A", cwd=dest)
    platform.git("commit", "-qm", "sample", cwd=dest)
    return dest
