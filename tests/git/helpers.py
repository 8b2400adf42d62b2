"""Helpers for the git receiver tests: run the real git CLI against our servers."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from unicloud.config import Settings

APP = "myapp"


def git(*args, cwd=None, env_extra=None, check=True, timeout=120) -> subprocess.CompletedProcess:
    e = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME="T", GIT_AUTHOR_EMAIL="t@example.test",
             GIT_COMMITTER_NAME="T", GIT_COMMITTER_EMAIL="t@example.test", GIT_CONFIG_NOSYSTEM="1",
             HOME=str(cwd or "/tmp"))
    e.update(env_extra or {})
    proc = subprocess.run(["git", *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def ssh_command(key: Path, port: int) -> str:
    return (f"ssh -i {key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            f"-o LogLevel=ERROR -o BatchMode=yes -p {port}")


def make_workdir(path: Path, files: dict[str, str] | None = None, message: str = "initial") -> Path:
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    for name, content in (files or {"app.py": "print('hello')\n"}).items():
        (path / name).write_text(content)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", message, cwd=path)
    return path


def commit(path: Path, message: str, name: str = "change.txt", content: str | None = None) -> str:
    (path / name).write_text(content if content is not None else f"{message}\n{time.time_ns()}\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", message, cwd=path)
    return git("rev-parse", "HEAD", cwd=path).stdout.strip()


def wait_for_ref(settings: Settings, app: str, sha: str, timeout: float = 30) -> None:
    """The deploy outlives a vanished client: wait for it to move the branch."""
    deadline = time.monotonic() + timeout
    while server_ref(settings, app) != sha:
        assert time.monotonic() < deadline, "the ref never moved after the build finished"
        time.sleep(0.1)


def server_ref(settings: Settings, app: str, ref: str = "refs/heads/main") -> str | None:
    from dulwich.repo import Repo

    path = settings.repos_dir / f"{app}.git"
    if not path.exists():
        return None
    with Repo(str(path)) as repo:
        sha = repo.refs.as_dict().get(ref.encode())
        return sha.decode() if sha else None


