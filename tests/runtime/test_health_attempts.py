"""How health-check attempts are spaced, against real sockets (no VMs).

QEMU's user-mode network accepts a connection before the guest is up and then holds it without
an answer; an app that is up but slow also holds a connection. The first must not delay the
check, the second must not get a pile of requests.
"""

from __future__ import annotations

import socket
import threading
import time

from unicloud.scheduler.health import Check, HealthSpec, run_until_deadline

OK = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
ERROR = b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom"


class Server(threading.Thread):
    """Accepts connections on loopback; `handle(conn)` runs in a thread per connection."""

    def __init__(self, handle, listen: bool = True):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handle = handle
        if listen:
            self.listen()

    def listen(self) -> None:
        self.sock.listen(64)
        self.start()

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.sock.close()


def read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk


def test_a_connection_held_before_the_guest_is_up_does_not_delay_the_check():
    """Refused (QEMU not started), then held (guest network down), then answered."""
    held: list[socket.socket] = []
    guest_up = threading.Event()

    def handle(conn):
        if not guest_up.is_set():
            held.append(conn)  # like slirp before the guest's network is up: accepted, never answered
            if len(held) >= 2:
                guest_up.set()
            return
        read_request(conn)
        conn.sendall(OK)
        conn.close()

    server = Server(handle, listen=False)  # bound, not listening: connections are refused
    try:
        spec = HealthSpec(checks=(Check(timeout=30),), deadline=60)
        threading.Timer(0.5, server.listen).start()
        res = run_until_deadline("127.0.0.1", server.port, spec, time.monotonic(), threading.Event())
        assert res.ok, res.detail
        # The first attempt is still waiting on its held connection: the check did not wait for it.
        held[0].setblocking(False)
        try:
            assert held[0].recv(1, socket.MSG_PEEK) != b"", "the first attempt already gave up"
        except BlockingIOError:
            pass  # still open, nothing more sent: the attempt is still waiting
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_a_slow_app_gets_one_request_at_a_time():
    """Closed at once (guest up, app not listening yet), then slow answers."""
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "served": 0, "closed": 0}

    def handle(conn):
        with lock:
            state["closed"] += 1
            early = state["closed"] <= 3
        if early:
            conn.close()
            return
        read_request(conn)
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(1.5)  # a slow first answer (lazy imports under TCG)
        with lock:
            state["now"] -= 1
            state["served"] += 1
        conn.sendall(OK)
        conn.close()

    server = Server(handle)
    cancel = threading.Event()
    result = {}
    checker = threading.Thread(target=lambda: result.update(res=run_until_deadline(
        "127.0.0.1", server.port, HealthSpec(checks=(Check(timeout=10),), deadline=60), time.monotonic(), cancel)))
    checker.start()
    try:
        checker.join(30)
        assert result["res"].ok, result["res"].detail
        assert state["max"] == 1
    finally:
        cancel.set()
        server.close()


def test_wrong_answers_end_the_check_after_the_declared_attempts():
    def handle(conn):
        read_request(conn)
        conn.sendall(ERROR)
        conn.close()

    server = Server(handle)
    try:
        spec = HealthSpec(checks=(Check(timeout=5),), deadline=60, attempts=2, source="CHECKS")
        res = run_until_deadline("127.0.0.1", server.port, spec, time.monotonic(), threading.Event())
        assert not res.ok
        assert res.detail.startswith("2 failed attempts (CHECKS)") and "HTTP 500" in res.detail
    finally:
        server.close()
