"""Logs through the real platform: app output and router lines in `logs --tail`, filters, a
syslog drain, and a crash recorded with its exit code and last output."""

from __future__ import annotations

import json
import socketserver
import subprocess
import threading
import time

import pytest

from tests.e2e.conftest import UNICLOUD

pytestmark = pytest.mark.slow

CRASHY_APP = '''\
import os, socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            print("about to crash on purpose", flush=True)
            os._exit(3)
        print(f"serving {self.path}", flush=True)
        body = b"alive\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.socket.bind(self.server_address)
        self.server_name, self.server_port = "localhost", self.server_address[1]


Server(("::", int(os.environ["PORT"])), Handler).serve_forever()
'''


class _Syslog(socketserver.StreamRequestHandler):
    def handle(self):
        self.server.received.append(self.rfile.read())


def _read_until(proc: subprocess.Popen, needles: list[str], lines: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(any(n in l for l in lines) for n in needles):
        time.sleep(0.1)
    missing = [n for n in needles if not any(n in l for l in lines)]
    assert not missing, f"never saw {missing} in logs --tail; got:\n" + "".join(lines[-40:])


def test_tail_filters_drain_and_crash(developer, tmp_path):
    syslog = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Syslog)
    syslog.received = []
    threading.Thread(target=syslog.serve_forever, daemon=True).start()

    repo = tmp_path / "crashy"
    repo.mkdir()
    (repo / "app.py").write_text(CRASHY_APP)
    (repo / "requirements.txt").write_text("")
    (repo / "Procfile").write_text("web: python app.py\n")
    developer.git("init", "-q", "-b", "main", cwd=repo)
    developer.git("add", "-A", cwd=repo)
    developer.git("commit", "-qm", "crashy", cwd=repo)
    developer.cli("create", "crashy", cwd=repo)
    developer.cli("drains:add", f"syslog+tcp://127.0.0.1:{syslog.server_address[1]}", "-a", "crashy")
    assert "Released v1" in developer.git("push", "unicloud", "main", cwd=repo).stderr
    developer.wait_for_body("crashy", "alive")

    tail = subprocess.Popen([UNICLOUD, "logs", "--tail", "-a", "crashy"], env=developer.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(l) for l in tail.stdout], daemon=True).start()
    try:
        time.sleep(1)
        assert developer.get("crashy", "/hello-logs").status_code == 200
        _read_until(tail, ["app[web.1]: serving /hello-logs", 'router[router]: at=info method=GET path="/hello-logs"'],
                    lines, timeout=30)
        router_line = next(l for l in lines if 'path="/hello-logs"' in l)
        assert "status=200" in router_line and "request_id=" in router_line

        try:
            developer.get("crashy", "/crash", timeout=5)
        except Exception:
            pass  # the process died mid-request: the router answers 502/503 or the connection drops
        _read_until(tail, ["app[web.1]: about to crash on purpose", "Process exited with status 3"], lines, timeout=60)
    finally:
        tail.terminate()
        tail.wait(10)

    ps = json.loads(developer.cli("ps", "-a", "crashy", "--json").stdout)
    assert any(i.get("exit_code") == 3 or i.get("restarts", 0) >= 1 for i in ps), ps
    # The crash is healed: a new instance serves again.
    developer.wait_for_body("crashy", "alive", timeout=120)

    only_router = developer.cli("logs", "-a", "crashy", "-n", "200", "--source", "router").stdout.splitlines()
    assert only_router and all(" router[router]: " in l for l in only_router)
    only_web1 = developer.cli("logs", "-a", "crashy", "-n", "200", "--ps", "web.1").stdout.splitlines()
    assert only_web1 and all("[web.1]: " in l for l in only_web1)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and b"about to crash on purpose" not in b"".join(syslog.received):
        time.sleep(0.5)
    frames = b"".join(syslog.received)
    assert b"crashy app web.1 - - about to crash on purpose" in frames
    syslog.shutdown()
