"""Helpers for build tests: real builds in real (cached) stacks, and serving the result."""

from __future__ import annotations

import os
import shlex
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from unicloud.build.pipeline import BuildOutput, run_build
from unicloud.build.sandbox import kill_sandboxed, mounts_under

APPS = Path(__file__).resolve().parents[1] / "apps"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes need root (mount, unshare, chroot)")


class LogLines(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self)


def build(src: Path, work: Path, *, cache: Path | None = None, env: dict | None = None, **kw) -> tuple[BuildOutput, LogLines]:
    log = LogLines()
    out = run_build(src, app=src.name, cache_dir=cache or work / "cache", env=env or {"GREETING": "Howdy"},
                    log=log, work_dir=work / "build", **kw)
    return out, log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch_from_web_process(out: BuildOutput, config: dict[str, str], timeout: float = 90) -> str:
    """Start the manifest's web process in the built root (as the image would) and GET /."""
    m = out.manifest
    port = free_port()
    env = {**m["env"], **config, "PORT": str(port), "HOME": m["workdir"]}
    cmd = ["/bin/sh", "-c", "exec " + m["process_types"]["web"]]
    proc = out.sandbox.spawn(cmd, env=env, workdir=m["workdir"], stdout=open(os.devnull, "wb"))
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                    return r.read().decode()
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(f"web process exited with {proc.returncode}: {shlex.join(cmd)}")
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    finally:
        kill_sandboxed(proc)


def assert_no_mounts(path: Path) -> None:
    assert mounts_under(path) == []


def processes_rooted_under(path: Path) -> list[int]:
    """PIDs whose root directory is inside `path` (a sandboxed process that survived)."""
    found = []
    prefix = str(path.resolve())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                root = os.readlink(entry / "root")
            except OSError:
                continue
            if root == prefix or root.startswith(prefix + "/"):
                found.append(int(entry.name))
    return found
