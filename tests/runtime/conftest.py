"""A real, private runtime: redis-server, SQLite, the agent (Celery worker + QEMU under TCG),
the scheduler and the router (nginx), each as its own process like under `unicloud up`."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import free_port
from unicloud.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class Proc:
    """One platform process, started with `python -m module`, output in a log file."""

    def __init__(self, module: str, env: dict, log: Path):
        self.module, self.env, self.log = module, env, log
        self.p: subprocess.Popen | None = None

    def start(self) -> "Proc":
        out = open(self.log, "ab")
        self.p = subprocess.Popen([sys.executable, "-m", self.module], env=self.env, stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
        out.close()
        return self

    def stop(self, sig=signal.SIGTERM, timeout: float = 40) -> None:
        if self.p and self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Runtime:
    settings: Settings
    env: dict
    tmp: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    app_name: str = "hello"
    images: dict[str, int] = field(default_factory=dict)  # name -> Image.id
    owner_id: int | None = None

    # --- processes ---------------------------------------------------------------------------
    def start(self, name: str, module: str, extra_env: dict | None = None) -> Proc:
        env = dict(self.env, **(extra_env or {}))
        proc = Proc(module, env, self.tmp / f"{name}.log").start()
        self.procs[name] = proc
        return proc

    # --- HTTP --------------------------------------------------------------------------------
    def get(self, path: str = "/", app: str | None = None, port: int | None = None, timeout: float = 10):
        """(status, body, headers) through the router (or straight to a VM port)."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.settings.router_port, timeout=timeout)
        try:
            host = f"{app or self.app_name}.{self.settings.domain}"
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace"), dict(resp.getheaders())
        finally:
            conn.close()

    def body(self, path: str = "/", app: str | None = None) -> str | None:
        try:
            status, body, _ = self.get(path, app)
        except OSError:
            return None
        return body if status == 200 else None

    # --- state -------------------------------------------------------------------------------
    def session(self):
        from unicloud.db.session import session_scope

        return session_scope(self.settings)

    def redis(self):
        from unicloud.redis_client import get_redis

        return get_redis(self.settings)

    def release(self, *, config: dict, cmd: str, description: str, image: str = "default") -> int:
        from sqlalchemy import select

        from unicloud.db.models import App, Image
        from unicloud.services.releases import create_release

        with self.session() as s:
            app = s.scalar(select(App).where(App.name == self.app_name))
            img = s.get(Image, self.images[image])
            app.config = dict(config)
            rel = create_release(s, app, image=img, config=config, process_types={"web": cmd},
                                 description=description, user=None)
            rid = rel.id
        self.wake()
        return rid

    def wake(self) -> None:
        """What the API does after changing desired state: nudge the scheduler."""
        from unicloud.scheduler.reconciler import WAKE_CHANNEL

        self.redis().publish(WAKE_CHANNEL, "1")

    def rollback(self, version: int | None = None) -> int:
        from sqlalchemy import select

        from unicloud.db.models import App, User
        from unicloud.services.releases import rollback

        with self.session() as s:
            app = s.scalar(select(App).where(App.name == self.app_name))
            user = s.get(User, self.owner_id)
            rid = rollback(s, app, user, version).id
        self.wake()
        return rid

    def wait_release(self, release_id: int, timeout: float = 180):
        from unicloud.services.releases import wait_for_release

        return wait_for_release(self.settings, release_id, timeout=timeout, poll=0.02)

    def instances(self, states=("starting", "up", "draining", "crashed")):
        from sqlalchemy import select

        from unicloud.db.models import App, Instance

        with self.session() as s:
            app = s.scalar(select(App).where(App.name == self.app_name))
            rows = list(s.scalars(select(Instance).where(Instance.app_id == app.id, Instance.state.in_(states))
                                  .order_by(Instance.index)))
            for r in rows:
                s.expunge(r)
            return rows

    def set_formation(self, web: int) -> None:
        from sqlalchemy import select

        from unicloud.db.models import App

        with self.session() as s:
            app = s.scalar(select(App).where(App.name == self.app_name))
            app.formation = {"web": web}
        self.wake()

    def app_logs(self, n: int = 500) -> list[str]:
        from unicloud import logs

        return [logs.format_entry(f) for _, f in logs.recent(self.redis(), self.app_name, n)]

    def vm_pid(self, instance_id: str, host: str = "local") -> int:
        return int((self.settings.vms_dir / host / instance_id / "qemu.pid").read_text().strip())

    def host_name(self, host_id: int) -> str:
        from unicloud.db.models import Host

        with self.session() as s:
            return s.get(Host, host_id).name

    def dump(self) -> str:
        parts = [f"--- {name} ---\n{p.output()[-6000:]}" for name, p in self.procs.items()]
        return "\n".join(parts) + "\n--- app log ---\n" + "\n".join(self.app_logs(80))


class Load(threading.Thread):
    """A bounded loop of requests through the router, counting anything that is not a 200."""

    def __init__(self, rt: Runtime, path: str = "/"):
        super().__init__(daemon=True)
        self.rt, self.path = rt, path
        self.ok = 0
        self.failures: list[str] = []
        self.bodies: dict[str, int] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set() and self.ok + len(self.failures) < 200_000:
            try:
                status, body, _ = self.rt.get(self.path)
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if status == 200:
                self.ok += 1
                self.bodies[body] = self.bodies.get(body, 0) + 1
            else:
                self.failures.append(f"HTTP {status}: {body[:100]}")

    def __enter__(self):
        self.start()
        wait_for(lambda: self.ok + len(self.failures) > 0, 10, "the first load request")
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.join(15)


CHECKS_FILE = b"ATTEMPTS=3\n/ this-content-never-appears\n"


@pytest.fixture(scope="session")
def runtime_images(tmp_path_factory):
    """name -> (image dir, digest, manifest): "default", and "checks" whose CHECKS file its app fails."""
    from tests.runtime.runtime_image import build_test_image

    store = tmp_path_factory.mktemp("store")
    images = {}
    for name, files in (("default", None), ("checks", {"CHECKS": CHECKS_FILE})):
        digest, manifest = build_test_image(tmp_path_factory.mktemp(f"image-{name}"), store, files)
        images[name] = (store / digest, digest, manifest)
    return images


TEST_ENV = {"UNICLOUD_WARM_WINDOW": "25", "UNICLOUD_DRAIN_GRACE": "3", "UNICLOUD_STOP_GRACE": "3",
            "UNICLOUD_HOST_CAPACITY_MB": "2048", "UNICLOUD_ACCEL": "tcg", "UNICLOUD_ROUTER_WORKERS": "1",
            "UNICLOUD_HEALTH_TIMEOUT": "60", "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def running_runtime(tmp: Path, images: dict[str, tuple[Path, str, dict]], **overrides: str):
    """Redis + migrated SQLite + agent + scheduler + router in `tmp`, with one app owning `images`."""
    data = tmp / "d"
    (data / "images").mkdir(parents=True)
    for image_dir, digest, _ in images.values():
        shutil.copytree(image_dir, data / "images" / digest)
    # TCP, not the unix socket: Celery's broker (kombu) does not understand redis-py's unix:// URLs.
    redis_port = free_port()
    redis_proc = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                                  stdout=open(tmp / "redis.log", "wb"), stderr=subprocess.STDOUT)
    wait_for(lambda: _port_open(redis_port), 10, "redis-server")
    settings = Settings(data_dir=data, cache_dir=Settings.from_env().cache_dir,
                        redis_url=f"redis://127.0.0.1:{redis_port}/0",
                        router_port=free_port(), host_name="local")
    base = 20000 + (os.getpid() % 200) * 40
    env = dict(os.environ, **settings.to_env(), UNICLOUD_PORT_RANGE=f"{base}-{base + 39}",
               **dict(TEST_ENV, **overrides))
    for key in ("UNICLOUD_WARM_WINDOW", "UNICLOUD_DRAIN_GRACE", "UNICLOUD_PORT_RANGE", "UNICLOUD_HEALTH_TIMEOUT"):
        os.environ[key] = env[key]  # the test process reads some of them too

    from unicloud.db.migrate import upgrade
    from unicloud.db.models import App, Image, User

    upgrade(settings)
    rt = Runtime(settings, env, tmp)
    with rt.session() as s:
        user = User(email="dev@example.com")
        s.add(user)
        s.flush()
        app = App(name=rt.app_name, owner_id=user.id, formation={"web": 1}, memory_mb=128)
        empty = App(name="empty", owner_id=user.id)
        s.add_all([app, empty])
        s.flush()
        for name, (_, digest, manifest) in images.items():
            img = Image(app_id=app.id, digest=f"sha256:{digest}", manifest=manifest)
            s.add(img)
            s.flush()
            rt.images[name] = img.id
        rt.owner_id = user.id
    rt.start("agent", "unicloud.hypervisor")
    rt.start("scheduler", "unicloud.scheduler")
    rt.start("router", "unicloud.router")
    try:
        wait_for(lambda: rt.redis().exists("host:local:heartbeat"), 60, "the agent's first heartbeat")
        wait_for(lambda: _router_serves_table(rt), 30, "the router to serve the scheduler's first table")
        yield rt
    finally:
        for name in ("scheduler", "router"):
            if name in rt.procs:
                rt.procs[name].stop()
        _stop_all_vms(rt)
        for name in [n for n in rt.procs if n.startswith("agent")]:
            rt.procs[name].stop()
        redis_proc.terminate()
        redis_proc.wait(10)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, runtime_images):
    for tool in ("redis-server", "qemu-system-x86_64", "/usr/sbin/nginx"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    with running_runtime(tmp_path_factory.mktemp("rt"), runtime_images) as rt:
        yield rt


def _router_serves_table(rt: Runtime) -> bool:
    """nginx briefly runs old and new workers after a reload; the router's ack means it is done."""
    from unicloud.router import table

    r = rt.redis()
    text = r.get(table.TABLE_KEY)
    if not text or "empty" not in text:
        return False
    return r.get(table.APPLIED_KEY) == table.RoutingTable.from_json(text).version


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _stop_all_vms(rt: Runtime) -> None:
    """Stop the QEMUs this runtime started (by their pid files, never by name)."""
    if not rt.settings.vms_dir.is_dir():
        return
    for d in rt.settings.vms_dir.glob("*/*"):
        pidfile = d / "qemu.pid"
        try:
            pid = int(pidfile.read_text().strip())
            if str(d / "qmp.sock").encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
