"""The paramiko SSH server: public-key auth as user `git`, and only git-receive-pack/upload-pack.

Everything else an SSH client can ask for (shells, PTYs, other commands, subsystems such as sftp,
port forwarding, agent and X11 forwarding) is refused: session requests get a one-line reason on
stderr and exit status 1, forwarding requests get the protocol's refusal.
"""

from __future__ import annotations

import logging
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

import paramiko
from dulwich.protocol import Protocol

from unicloud.config import Settings
from unicloud.db.session import session_scope
from unicloud.git.access import SERVICES, AccessDenied, app_from_repo_arg, authorize, handlers_for
from unicloud.git.deploy import LOCK_TIMEOUT, DeployResult, deploy_push
from unicloud.git.hostkey import load_or_create_host_key
from unicloud.services.keys import user_for_key_blob

log = logging.getLogger(__name__)

GIT_USER = "git"
LOGIN_GRACE = 30.0  # seconds from TCP connect to a command request
IDLE_TIMEOUT = 300.0  # no data moving in either direction
MAX_SESSION = LOCK_TIMEOUT + 300  # a push may wait for another push, then build and deploy
MAX_CONNECTIONS = 64


@dataclass
class _Request:
    """What the client asked a session channel to do: a git service, or a refusal reason."""

    service: str | None = None
    arg: str = ""
    refusal: str | None = None


class _Policy(paramiko.ServerInterface):
    """Per-connection decisions. Runs on paramiko's transport thread, so it only records."""

    def __init__(self, settings: Settings, peer: str):
        self.settings = settings
        self.peer = peer
        self.user_id: int | None = None
        self.requests: dict[int, _Request] = {}
        self.pty_channels: set[int] = set()
        self.ready = threading.Condition()

    # --- authentication -------------------------------------------------------------------
    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_none(self, username):
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username, password):
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        if username != GIT_USER:
            log.info("%s: refused user %r (only %r)", self.peer, username, GIT_USER)
            return paramiko.AUTH_FAILED
        with session_scope(self.settings) as s:
            user = user_for_key_blob(s, key.asbytes())
            user_id = user.id if user else None
        if user_id is None:
            log.info("%s: unknown %s key %s", self.peer, key.get_name(), key.fingerprint)
            return paramiko.AUTH_FAILED
        self.user_id = user_id
        return paramiko.AUTH_SUCCESSFUL

    # --- channels and forwarding ----------------------------------------------------------
    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        log.info("%s: refused channel type %s", self.peer, kind)
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid, origin, destination):
        log.info("%s: refused port forwarding to %s", self.peer, destination)
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_port_forward_request(self, address, port):
        log.info("%s: refused remote port forwarding %s:%s", self.peer, address, port)
        return False

    def check_global_request(self, kind, msg):
        return False

    def check_channel_x11_request(self, channel, single_connection, auth_protocol, auth_cookie, screen_number):
        log.info("%s: refused X11 forwarding", self.peer)
        return False

    def check_channel_forward_agent_request(self, channel):
        log.info("%s: refused agent forwarding", self.peer)
        return False

    def check_channel_env_request(self, channel, name, value):
        return False  # GIT_PROTOCOL included: dulwich speaks protocol v0 here

    # --- session requests: record, answer "ok", refuse with a reason later -----------------
    def check_channel_pty_request(self, channel, term, width, height, pixelwidth, pixelheight, modes):
        self.pty_channels.add(channel.get_id())
        return True  # refused with a readable reason when the shell/exec request follows

    def check_channel_window_change_request(self, channel, width, height, pixelwidth, pixelheight):
        return True

    def check_channel_shell_request(self, channel):
        self._record(channel, _Request(refusal="interactive shells are not available: this server only "
                                               "accepts git push and git fetch"))
        return True

    def check_channel_subsystem_request(self, channel, name):
        self._record(channel, _Request(refusal=f"subsystem {name!r} is not available: this server only "
                                               "accepts git push and git fetch"))
        return True

    def check_channel_exec_request(self, channel, command):
        self._record(channel, parse_command(command))
        return True

    def _record(self, channel, request: _Request) -> None:
        if channel.get_id() in self.pty_channels:
            request = _Request(refusal="PTY allocation is not allowed: this server only speaks git "
                                      "(do not use ssh -t)")
        with self.ready:
            self.requests.setdefault(channel.get_id(), request)
            self.ready.notify_all()

    def wait_request(self, chanid: int, timeout: float) -> _Request | None:
        with self.ready:
            self.ready.wait_for(lambda: chanid in self.requests, timeout=timeout)
            return self.requests.get(chanid)


def parse_command(command: bytes) -> _Request:
    """`git-receive-pack 'app.git'` -> the service and its repository argument, else a refusal."""
    text = command.decode("utf-8", "replace")
    try:
        words = shlex.split(text)
    except ValueError:
        words = []
    if len(words) == 2 and words[0] in SERVICES:
        return _Request(service=words[0], arg=words[1])
    shown = text if len(text) <= 60 else text[:57] + "..."
    return _Request(refusal=f"command not allowed: {shown!r}; only git-receive-pack and git-upload-pack "
                            "of <app>.git")


class GitSSHServer:
    """A threaded SSH server; each connection runs in its own thread and may fail on its own."""

    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None,
                 deploy: Callable[..., DeployResult] = deploy_push, max_push_bytes: int | None = None,
                 idle_timeout: float = IDLE_TIMEOUT, max_session: float = MAX_SESSION):
        self.settings = settings
        self.host = settings.bind if host is None else host
        self.port = settings.ssh_port if port is None else port
        self.deploy = deploy
        self.max_push_bytes = max_push_bytes
        self.idle_timeout = idle_timeout
        self.max_session = max_session
        self.host_key = load_or_create_host_key(settings.host_key_path)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def bind(self) -> tuple[str, int]:
        """Listen now (port 0 picks a free port); returns the bound address."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.settimeout(0.5)
        self._sock = sock
        self.port = sock.getsockname()[1]
        log.info("git SSH server listening on %s:%d (host key %s %s)", self.host, self.port,
                 self.host_key.get_name(), self.host_key.fingerprint)
        return self.host, self.port

    def serve_forever(self) -> None:
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, addr = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            if not self._slots.acquire(blocking=False):
                log.warning("%s: too many connections, dropping", addr)
                conn.close()
                continue
            threading.Thread(target=self._connection, args=(conn, addr), daemon=True,
                             name=f"git-ssh-{addr[0]}:{addr[1]}").start()

    def start(self) -> tuple[str, int]:
        """Serve in a background thread (for tests and embedding)."""
        addr = self.bind()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True, name="git-ssh-accept")
        self._thread.start()
        return addr

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- one connection -----------------------------------------------------------------------
    def _connection(self, conn: socket.socket, addr) -> None:
        peer = f"{addr[0]}:{addr[1]}"
        transport = None
        watchdog = None
        try:
            conn.settimeout(LOGIN_GRACE)
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            transport.auth_timeout = LOGIN_GRACE
            policy = _Policy(self.settings, peer)
            transport.start_server(server=policy)
            watchdog = threading.Timer(self.max_session, self._expire, args=(transport, peer))
            watchdog.daemon = True
            watchdog.start()
            chan = transport.accept(timeout=LOGIN_GRACE)
            if chan is None:
                return
            request = policy.wait_request(chan.get_id(), LOGIN_GRACE)
            if request is None:
                chan.close()
                return
            self._session(chan, policy, request, peer)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.info("%s: connection ended: %s", peer, exc)
        except Exception:  # noqa: BLE001 - one bad connection must not take the server down
            log.exception("%s: unexpected error", peer)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if transport is not None:
                transport.close()
            else:
                conn.close()
            self._slots.release()

    def _expire(self, transport: paramiko.Transport, peer: str) -> None:
        log.warning("%s: session exceeded %.0fs, closing", peer, self.max_session)
        transport.close()

    def _session(self, chan: paramiko.Channel, policy: _Policy, request: _Request, peer: str) -> None:
        if request.refusal is None:
            try:
                app = app_from_repo_arg(request.arg)
                authorize(self.settings, policy.user_id, app)
            except AccessDenied as exc:
                request = _Request(refusal=str(exc))
        if request.refusal is not None:
            log.info("%s: refused: %s", peer, request.refusal)
            chan.sendall_stderr(f"unicloud: {request.refusal}\n".encode())
            self._finish(chan, 1)
            return
        log.info("%s: user %s %s %s", peer, policy.user_id, request.service, app)
        chan.settimeout(self.idle_timeout)
        backend, handlers = handlers_for(self.settings, app, policy.user_id, deploy=self.deploy,
                                         max_push_bytes=self.max_push_bytes)
        try:
            rfile = chan.makefile("rb", -1)  # exact-length reads, which dulwich's pack reader needs
            proto = Protocol(rfile.read, chan.sendall)
            handler = handlers[request.service.encode()](backend, [request.arg], proto)
            handler.handle()
            status = 1 if getattr(handler, "rejected", False) else 0
        finally:
            backend.close()
        self._finish(chan, status)

    @staticmethod
    def _finish(chan: paramiko.Channel, status: int) -> None:
        """Exit status, EOF, close; then let the client hang up first, or ssh reports a reset."""
        chan.send_exit_status(status)
        chan.shutdown_write()
        chan.close()
        transport = chan.get_transport()
        deadline = time.monotonic() + 10
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)
