"""Drains deliver real frames to a real syslog TCP listener and a real HTTP endpoint."""

from __future__ import annotations

import http.server
import socketserver
import threading

import pytest
import redis

from unicloud.db.models import App, LogDrain, User
from unicloud.db.session import session_scope
from unicloud.logs import emit, stream_key
from unicloud.logs.drains import DrainForwarder, syslog_frame


class _SyslogHandler(socketserver.StreamRequestHandler):
    def handle(self):
        self.server.received.append(self.rfile.read())


class _HTTPHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.headers["Content-Type"], self.headers["Logplex-Msg-Count"], body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def _serve(server):
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def app_with_drains(settings):
    syslog = _serve(socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SyslogHandler))
    web = _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HTTPHandler))
    with session_scope(settings) as s:
        user = User(email="dev@example.com")
        s.add(user)
        s.flush()
        app = App(name="drained", owner_id=user.id, config={}, formation={"web": 1})
        s.add(app)
        s.flush()
        s.add(LogDrain(app_id=app.id, url=f"syslog+tcp://127.0.0.1:{syslog.server_address[1]}"))
        s.add(LogDrain(app_id=app.id, url=f"http://127.0.0.1:{web.server_address[1]}/logs"))
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    r.delete(stream_key("drained"))
    yield r, syslog, web
    syslog.shutdown()
    web.shutdown()


def test_drains_receive_new_lines_once(settings, app_with_drains):
    r, syslog, web = app_with_drains
    emit(r, "drained", "app", "web.1", "before the drain existed")
    fwd = DrainForwarder(settings)
    assert fwd.pass_once(r) == 0  # a new drain starts at the end of the stream
    emit(r, "drained", "app", "web.1", "hello from the app")
    emit(r, "drained", "router", "router", "GET / 200 3ms")
    assert fwd.pass_once(r) == 4  # two lines to each of two drains
    assert fwd.pass_once(r) == 0  # nothing is sent twice

    for _ in range(50):
        if syslog.received:
            break
        threading.Event().wait(0.05)
    frames = b"".join(syslog.received)
    assert b"hello from the app" in frames and b"GET / 200 3ms" in frames
    assert b"before the drain existed" not in frames
    length, rest = frames.split(b" ", 1)  # octet counting: "<len> <msg>"
    assert rest[: int(length)].endswith(b"hello from the app")

    ctype, count, body = web.received[0]
    assert ctype == "application/logplex-1" and count == "2"
    assert b"drained app web.1 - - hello from the app" in body


def test_syslog_frame_is_octet_counted():
    frame = syslog_frame("myapp", {"ts": "2026-12-03T12:00:00.000000+00:00", "source": "app", "dyno": "web.1", "line": "hi"})
    length, msg = frame.split(b" ", 1)
    assert int(length) == len(msg)
    assert msg == b"<14>1 2026-12-03T12:00:00.000000+00:00 myapp app web.1 - - hi"


def test_unreachable_drain_backs_off_and_keeps_cursor(settings, app_with_drains):
    r, syslog, web = app_with_drains
    with session_scope(settings) as s:
        app = s.query(App).filter_by(name="drained").one()
        s.query(LogDrain).delete()
        s.add(LogDrain(app_id=app.id, url="syslog+tcp://127.0.0.1:9"))  # discard port: refused
        s.flush()
        drain_id = s.query(LogDrain).one().id
    fwd = DrainForwarder(settings)
    fwd.pass_once(r)  # sets the drain's cursor at the end of the stream
    emit(r, "drained", "app", "web.1", "kept for later")
    assert fwd.pass_once(r) == 0  # delivery refused
    assert drain_id in fwd.backoff, "a failing drain must back off"
    cursor = r.get(f"drain:{drain_id}:cursor")
    pending = r.xrange(stream_key("drained"), min=f"({cursor}")
    assert [f["line"] for _i, f in pending] == ["kept for later"]  # not lost: still after the cursor
