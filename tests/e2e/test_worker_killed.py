"""A build worker killed mid-build: the push is rejected with a clear reason, the build is
marked failed (never stuck "running"), and the next push builds normally."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _worker_pids(data_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"unicloud.build.worker" in cmd and f"UNICLOUD_DATA_DIR={data_dir}".encode() in env.split(b"\0"):
            pids.append(int(proc.name))
    return pids


def test_killed_worker_fails_the_build_and_push(developer, tmp_path):
    repo = developer.checkout("flask", tmp_path / "flaky")
    developer.cli("create", "killed-worker", cwd=repo)
    push = subprocess.Popen(["git", "push", "unicloud", "main"], cwd=repo, env=developer.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in push.stdout:
        seen.append(line)
        if "Installing requirements" in line or "Restoring cached" in line:
            break
    (leader,) = [p for p in _worker_pids(developer.platform.settings.data_dir) if os.getpgid(p) == p]
    os.killpg(leader, signal.SIGKILL)
    rest, _ = push.communicate(timeout=300)
    output = "".join(seen) + rest
    assert push.returncode != 0
    assert "! [remote rejected] main -> main (build failed: build worker was lost mid-build" in output

    builds = json.loads(developer.cli("builds", "-a", "killed-worker", "--json").stdout)
    assert builds[0]["status"] == "failed"
    assert "worker was lost" in builds[0]["reason"]

    # The supervisor restarted the worker: the same commit now builds and deploys.
    again = developer.git("push", "unicloud", "main", cwd=repo)
    assert "Released v1" in again.stderr
