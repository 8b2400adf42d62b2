"""Smart-HTTP git (`/<app>.git/info/refs`, `/git-upload-pack`, `/git-receive-pack` only).

Built on dulwich.web's service functions, but with our own routing: dulwich's HTTPGitApplication
also serves the dumb-protocol file routes (objects, packs, HEAD), which would bypass our rules.
Authentication is HTTP Basic with an API token as the password (any user name).

Two things make this work under any WSGI server, including an ASGI bridge such as Starlette's
WSGIMiddleware (whose `start_response` returns no `write` callable, and which has already decoded
a chunked body while still passing `Transfer-Encoding: chunked`):
  - dulwich runs in a worker thread and its output is handed to the response iterator through a
    bounded queue, so `remote:` lines reach the client live, as they are written;
  - a chunked body is only de-chunked here if it still looks chunk-encoded.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import logging
import queue
import re
import threading
import time
from typing import Callable, Iterable, Iterator
from urllib.parse import parse_qs

from dulwich.web import ChunkReader, HTTPGitRequest, get_info_refs, handle_service_request

from unicloud.config import Settings
from unicloud.db.session import session_scope
from unicloud.git.access import SERVICES, AccessDenied, authorize, handlers_for
from unicloud.git.deploy import DeployResult, deploy_push
from unicloud.services.tokens import user_for_token

log = logging.getLogger(__name__)

_ROUTE = re.compile(r"^/(?P<app>[a-z][a-z0-9-]{0,28}[a-z0-9])\.git/(?P<what>info/refs|git-upload-pack|git-receive-pack)$")
_QUEUE_CHUNKS = 64  # ~4 MB of pack in flight per response at most
_STALL_TIMEOUT = 300.0  # seconds a response may stop being read before the client counts as gone
_HEX = frozenset(b"0123456789abcdefABCDEF")


def create_git_wsgi_app(settings: Settings, *, deploy: Callable[..., DeployResult] = deploy_push,
                        max_push_bytes: int | None = None) -> Callable:
    """The WSGI app the API mounts at `/git` (so clients use `http://HOST:API/git/NAME.git`)."""
    return GitHTTPApp(settings, deploy=deploy, max_push_bytes=max_push_bytes)


def _text(start_response, status: str, message: str, headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = (message.rstrip("\n") + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-cache"), *(headers or [])])
    return [body]


class GitHTTPApp:
    def __init__(self, settings: Settings, *, deploy: Callable[..., DeployResult] = deploy_push,
                 max_push_bytes: int | None = None):
        self.settings = settings
        self.deploy = deploy
        self.max_push_bytes = max_push_bytes

    def __call__(self, environ, start_response) -> Iterable[bytes]:
        m = _ROUTE.match(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "GET")
        if m is None:
            return _text(start_response, "404 Not Found",
                         "not found: this endpoint serves smart-HTTP git at /<app>.git only")
        what = m.group("what")
        if what == "info/refs":
            service = parse_qs(environ.get("QUERY_STRING", "")).get("service", [""])[0]
            if method != "GET":
                return _text(start_response, "405 Method Not Allowed", "use GET for info/refs", [("Allow", "GET")])
            if service not in SERVICES:
                return _text(start_response, "403 Forbidden",
                             "the dumb HTTP protocol is not supported: use a git client with smart HTTP")
        elif method != "POST":
            return _text(start_response, "405 Method Not Allowed", f"use POST for {what}", [("Allow", "POST")])
        else:
            service = what
        user_id = self._user_id(environ)
        if user_id is None:
            return _text(start_response, "401 Unauthorized",
                         "authentication required: use your API token as the password",
                         [("WWW-Authenticate", 'Basic realm="unicloud git"')])
        app = m.group("app")
        try:
            authorize(self.settings, user_id, app)
        except AccessDenied as exc:
            return _text(start_response, "404 Not Found", str(exc))
        backend, handlers = handlers_for(self.settings, app, user_id, deploy=self.deploy,
                                         max_push_bytes=self.max_push_bytes)
        if what == "info/refs":
            func, mat = get_info_refs, re.search(r"/info/refs\Z", environ["PATH_INFO"])
        else:
            environ["wsgi.input"] = _request_body(environ)
            func, mat = handle_service_request, re.search(rf"/{what}\Z", environ["PATH_INFO"])
        log.info("http: user %s %s %s", user_id, service, app)
        return _stream(func, mat, environ, start_response, backend, handlers)

    def _user_id(self, environ) -> int | None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None
        try:
            username, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        with session_scope(self.settings) as s:
            user = user_for_token(s, password or username)
            return user.id if user else None


class _ClientGone(BrokenPipeError):
    pass


def _stream(func, mat, environ, start_response, backend, handlers) -> Iterator[bytes] | list[bytes]:
    """Run a dulwich service function in a thread; yield what it writes as soon as it writes it."""
    chunks: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
    head: dict = {}
    gone = threading.Event()

    def put(item) -> None:
        # A response nobody reads (client gone, server not closing the iterator) must not block
        # the push thread forever: a deploy in progress has to finish and move its ref.
        deadline = time.monotonic() + _STALL_TIMEOUT
        while not gone.is_set() and time.monotonic() < deadline:
            try:
                chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        gone.set()
        if item[0] == "data":
            raise _ClientGone("the HTTP client went away")

    def thread_start_response(status, headers, exc_info=None):
        head["status"], head["headers"] = status, list(headers)
        put(("start", None))
        return lambda data: put(("data", bytes(data)))

    def run() -> None:
        try:
            req = HTTPGitRequest(environ, thread_start_response, handlers=handlers)
            for chunk in func(req, backend, mat):
                put(("data", chunk))
        except _ClientGone:
            log.info("http: client went away")
        except Exception as exc:  # noqa: BLE001 - reported to the client if the response has not started
            log.exception("http: git service failed")
            put(("error", exc))
        finally:
            backend.close()
            put(("end", None))

    threading.Thread(target=run, daemon=True, name="git-http").start()
    kind, value = chunks.get()
    if kind != "start":
        gone.set()
        return _text(start_response, "500 Internal Server Error", f"git service failed: {value or 'no response'}")
    start_response(head["status"], head["headers"])

    def body() -> Iterator[bytes]:
        try:
            while True:
                kind, value = chunks.get()
                if kind == "data":
                    if value:
                        yield value
                elif kind in ("end", "error"):
                    return
        finally:
            gone.set()

    return body()


class _Reader:
    """`read(n)` over already-read bytes followed by a file, stopping after `limit` bytes.

    The limit makes a body end at Content-Length even on servers (wsgiref) that hand over the raw
    socket, so a truncated pack fails instead of waiting for bytes that never come.
    """

    def __init__(self, prefix: bytes, f, limit: int | None):
        self._prefix = prefix
        self._f = f
        self._left = limit

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        if self._left is not None:
            n = min(n, self._left)
        out = self._prefix[:n]
        self._prefix = self._prefix[n:]
        if len(out) < n:
            out += self._f.read(n - len(out))
        if self._left is not None:
            self._left -= len(out)
        return out

    def readline(self, limit: int = -1) -> bytes:
        line = b""
        while not line.endswith(b"\n") and (limit < 0 or len(line) < limit):
            c = self.read(1)
            if not c:
                break
            line += c
        return line


def _request_body(environ):
    """The request body as a plain stream: length-capped, de-chunked if needed, gunzipped if gzip."""
    raw = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    limit = int(length) if length.isdigit() else None
    body = _Reader(b"", raw, limit)
    if environ.pop("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" and limit is None:
        probe = b""
        while len(probe) < 17:
            c = body.read(1)
            if not c:
                break
            probe += c
            if c[0] not in _HEX:
                break
        # Raw chunked framing starts "<hex size>\r\n" (or ";ext"); a git body starts with a 4-hex
        # pkt-line length followed by more hex or text, and a gzip body with 0x1f.
        still_chunked = len(probe) >= 2 and probe[-1:] in (b"\r", b";") and all(b in _HEX for b in probe[:-1])
        body = _Reader(probe, body, None)
        if still_chunked:
            body = ChunkReader(body)
    if environ.pop("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
        body = gzip.GzipFile(fileobj=body, mode="rb")
    environ.pop("CONTENT_LENGTH", None)
    return body
