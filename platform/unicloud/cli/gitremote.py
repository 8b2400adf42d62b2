"""The `unicloud` git remote: how `create` wires a repo and how commands infer the app."""

from __future__ import annotations

import re
import subprocess

REMOTE = "unicloud"
_APP_FROM_URL = re.compile(r"/([a-z][a-z0-9-]{1,29})\.git/?$")


def _git(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        return subprocess.CompletedProcess(["git", *args], 127, "", "git is not installed")


def in_work_tree() -> bool:
    res = _git("rev-parse", "--is-inside-work-tree")
    return res.returncode == 0 and res.stdout.strip() == "true"


def remote_url(name: str = REMOTE) -> str | None:
    res = _git("remote", "get-url", name)
    return res.stdout.strip() if res.returncode == 0 else None


def app_from_url(url: str) -> str | None:
    m = _APP_FROM_URL.search(url or "")
    return m.group(1) if m else None


def app_from_remote() -> str | None:
    url = remote_url()
    return app_from_url(url) if url else None


def set_remote(url: str, name: str = REMOTE) -> str:
    """Add the remote, or repoint it; returns 'added' or 'updated'."""
    if remote_url(name) is None:
        res, verb = _git("remote", "add", name, url), "added"
    else:
        res, verb = _git("remote", "set-url", name, url), "updated"
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip() or f"git remote {verb[:-1]} failed")
    return verb


def remove_remote_if(app: str, name: str = REMOTE) -> bool:
    if app_from_remote() != app:
        return False
    return _git("remote", "remove", name).returncode == 0
