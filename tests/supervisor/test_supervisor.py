"""The supervisor with a small real Procfile: readiness line, restart of crashed children,
no orphans after SIGTERM, and state that survives a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import free_port

SCRIPT = """
import sys
from pathlib import Path
from unicloud.config import Settings
from unicloud.supervisor.up import run
s = Settings(data_dir=Path(sys.argv[1]), api_port=int(sys.argv[2]), ssh_port=int(sys.argv[3]), router_port=int(sys.argv[4]))
sys.exit(run(s, Path(sys.argv[5])))
"""


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout.split()
    pairs = list(zip(map(int, out[::2]), map(int, out[1::2])))
    found, frontier = set(), {pid}
    while frontier:
        nxt = {c for c, p in pairs if p in frontier} - found
        found |= nxt
        frontier = nxt
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _start(tmp_path: Path, procfile: Path, api: int):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "data"), str(api), str(free_port()),
                             str(free_port()), str(procfile)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    return proc, line


@pytest.fixture
def procfile(tmp_path):
    api = free_port()
    pf = tmp_path / "Procfile"
    pf.write_text(
        f"api: python -m http.server {api} --bind 127.0.0.1\n"
        "worker: python -c \"import time; time.sleep(3600)\"\n"
    )
    return pf, api


def test_ready_line_stop_and_no_orphans(tmp_path, procfile):
    pf, api = procfile
    proc, line = _start(tmp_path, pf, api)
    try:
        assert line.startswith(f"unicloud ready console=http://127.0.0.1:{api} git=ssh://git@127.0.0.1:")
        assert " router=http://127.0.0.1:" in line
        kids = _descendants(proc.pid)
        assert len(kids) >= 3  # redis-server + two Procfile processes
        token = tmp_path / "data" / "admin.token"
        assert token.stat().st_mode & 0o777 == 0o600
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    time.sleep(0.5)
    assert [p for p in kids if _alive(p)] == []


def test_crashed_child_is_restarted(tmp_path):
    pf = tmp_path / "Procfile"
    marker = tmp_path / "starts"
    pf.write_text(f"flaky: python -c \"open('{marker}', 'a').write('x'); import time; time.sleep(3)\"\n")
    proc, line = _start(tmp_path, pf, free_port())
    try:
        assert line.startswith("unicloud ready")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(marker.read_text()) < 2:
            time.sleep(0.2)
        assert len(marker.read_text()) >= 2
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def test_restart_keeps_state(tmp_path, procfile):
    pf, api = procfile
    proc, line = _start(tmp_path, pf, api)
    token = (tmp_path / "data" / "admin.token").read_text()
    import redis

    from unicloud.config import Settings
    from unicloud.db.models import User
    from unicloud.db.session import session_scope

    pw = (tmp_path / "data" / "redis" / "password").read_text()
    port = int((tmp_path / "data" / "redis" / "redis.conf").read_text().split("\nport ")[1].split()[0])
    redis.Redis(port=port, password=pw).set("survives", "yes")
    settings = Settings(data_dir=tmp_path / "data")
    with session_scope(settings) as s:
        s.add(User(email="kept@example.com"))
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)

    proc, line = _start(tmp_path, pf, api)
    try:
        assert line.startswith("unicloud ready")
        assert (tmp_path / "data" / "admin.token").read_text() == token
        port = int((tmp_path / "data" / "redis" / "redis.conf").read_text().split("\nport ")[1].split()[0])
        assert redis.Redis(port=port, password=pw).get("survives") == b"yes"
        with session_scope(settings) as s:
            assert s.query(User).filter_by(email="kept@example.com").one()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_busy_port_is_a_clear_error(tmp_path, procfile):
    pf, api = procfile
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", api))
        s.listen()
        proc, line = _start(tmp_path, pf, api)
        assert proc.wait(30) == 1
        assert line == ""
        assert f"api port 127.0.0.1:{api} is already in use" in proc.stderr.read()
