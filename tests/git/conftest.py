"""Fixtures for the git receiver: users with SSH keys and tokens (on the shared `settings` and
`redis_url` fixtures of tests/conftest.py) and an in-process SSH server whose build step is injectable."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from unicloud.config import Settings
from unicloud.db.session import session_scope
from unicloud.git.deploy import DeployResult, deploy_push
from unicloud.git.ssh import GitSSHServer
from unicloud.services.apps import create_app
from unicloud.services.keys import add_key
from unicloud.services.tokens import create_token
from unicloud.services.users import get_or_create_user

from tests.git.helpers import APP, ssh_command


def _keypair(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


@dataclass
class Env:
    settings: Settings
    alice_key: Path
    bob_key: Path
    stranger_key: Path
    alice_token: str
    bob_token: str
    alice_id: int
    tmp: Path


@pytest.fixture
def env(tmp_path, settings):
    settings.domain = "example.test"
    keys = tmp_path / "keys"
    keys.mkdir()
    alice_key, bob_key, stranger_key = (_keypair(keys, n) for n in ("alice", "bob", "stranger"))
    with session_scope(settings) as s:
        alice = get_or_create_user(s, "alice@example.test")
        bob = get_or_create_user(s, "bob@example.test")
        add_key(s, alice, (keys / "alice.pub").read_text())
        add_key(s, bob, (keys / "bob.pub").read_text())
        create_app(s, alice, APP)
        create_app(s, bob, "bobs-app")
        alice_token = create_token(s, alice)
        bob_token = create_token(s, bob)
        alice_id = alice.id
    return Env(settings, alice_key, bob_key, stranger_key, alice_token, bob_token, alice_id, tmp_path)


class FakeBuilder:
    """Stands in for build + release in receiver tests (the real pipeline is tested elsewhere).

    Prints a few log lines, counts deploys, and fails when the commit message says BUILD-FAIL.
    """

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.deployed: list[str] = []
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, settings, *, app, user_id, ref, new, out):
        from dulwich.repo import Repo

        self.started.set()
        with Repo(str(settings.repos_dir / f"{app}.git")) as repo:
            message = repo[new.encode()].message.decode()
        out(f"-----> Building {app} ({new[:7]})")
        out("-----> Python app detected")
        if not self.release.wait(60):
            raise RuntimeError("test never released the builder")
        time.sleep(self.delay)
        if "BUILD-FAIL" in message:
            out("error: requirements.txt is broken")
            return DeployResult(False, "build failed: pip install exited with status 1")
        with self.lock:
            self.deployed.append(new)
            version = len(self.deployed)
        out(f"Released v{version}")
        out(settings.app_url(app))
        return DeployResult(True, "", version)


@pytest.fixture
def builder():
    return FakeBuilder()


@pytest.fixture
def ssh_server_factory(env, builder):
    """Start in-process SSH servers on free ports, with the fake builder behind the real deploy_push."""
    servers = []

    def start(**kwargs) -> GitSSHServer:
        server = GitSSHServer(env.settings, host="127.0.0.1", port=0,
                              deploy=partial(deploy_push, builder=builder), **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def ssh_server(ssh_server_factory):
    return ssh_server_factory()


@dataclass
class SSHRemote:
    """How a test's git reaches the SSH server as a given user."""

    port: int
    key: Path

    def url(self, app: str = APP) -> str:
        return f"ssh://git@127.0.0.1:{self.port}/{app}.git"

    @property
    def env(self) -> dict[str, str]:
        return {"GIT_SSH_COMMAND": ssh_command(self.key, self.port)}


@pytest.fixture
def alice(env, ssh_server) -> SSHRemote:
    return SSHRemote(ssh_server.port, env.alice_key)




def _serve_asgi(wsgi_app, port: int):
    """Like the API does: a2wsgi's WSGIMiddleware mounted at /git, under uvicorn."""
    import uvicorn
    from a2wsgi import WSGIMiddleware
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = Starlette(routes=[Mount("/git", app=WSGIMiddleware(wsgi_app, workers=16))])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(10)
    return stop


def _serve_wsgiref(wsgi_app, port: int):
    """The stdlib server: it passes chunked request bodies through undecoded."""
    import socketserver
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    def mounted(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/git/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/git"
        environ["PATH_INFO"] = path[len("/git"):]
        return wsgi_app(environ, start_response)

    httpd = make_server("127.0.0.1", port, mounted, server_class=Server, handler_class=Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def stop():
        httpd.shutdown()
        httpd.server_close()
    return stop


@pytest.fixture(params=["asgi", "wsgiref"])
def http_base(request, env, builder):
    """Base URL of the git HTTP app mounted at /git, served both ways the app may be run."""
    from tests.support import free_port
    from unicloud.git.http import create_git_wsgi_app

    wsgi_app = create_git_wsgi_app(env.settings, deploy=partial(deploy_push, builder=builder))
    port = free_port()
    stop = (_serve_asgi if request.param == "asgi" else _serve_wsgiref)(wsgi_app, port)
    yield f"http://127.0.0.1:{port}/git"
    stop()
