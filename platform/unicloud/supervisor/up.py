"""`unicloud up`: start Redis, migrate, then run and watch every Procfile process until signalled."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from pathlib import Path

from unicloud.config import Settings
from unicloud.supervisor.children import Child, die_with_parent
from unicloud.supervisor.procfile import parse_procfile, platform_procfile
from unicloud.supervisor.readiness import check, port_in_use
from unicloud.supervisor.redis_server import PrivateRedis
from unicloud.supervisor.vms import stop_all_vms

READY_TIMEOUT = float(os.environ.get("UNICLOUD_READY_TIMEOUT", "180"))
ALIVE_GRACE = 2.0  # a queue consumer still running after this long has connected to Redis
# Stop order: traffic first, then the producers of work, then the workers, then state.
STOP_ORDER = ["router", "scheduler", "git", "api", "worker", "agent"]


class UpError(RuntimeError):
    pass


def say(msg: str) -> None:
    print(f"unicloud: {msg}", file=sys.stderr, flush=True)


def ready_line(settings: Settings) -> str:
    h = settings.bind
    return (f"unicloud ready console=http://{h}:{settings.api_port} git=ssh://git@{h}:{settings.ssh_port} "
            f"router=http://{h}:{settings.router_port}")


class Supervisor:
    def __init__(self, settings: Settings, procfile: Path | None = None):
        self.settings = settings
        self.procfile = procfile or platform_procfile()
        self.children: list[Child] = []
        self.redis: PrivateRedis | None = None
        self.stopping = False
        self.logs_dir = settings.data_dir / "logs"

    # -- setup -------------------------------------------------------------------------------
    def _lock_data_dir(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = open(self.settings.data_dir / "unicloud.lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UpError(f"another `unicloud up` is already running on {self.settings.data_dir}") from None

    def _check_ports(self) -> None:
        s = self.settings
        for what, port in (("api", s.api_port), ("ssh", s.ssh_port), ("router", s.router_port)):
            if port_in_use(s.bind, port):
                raise UpError(f"{what} port {s.bind}:{port} is already in use; pick another with --{what}-port")

    def _start_redis(self) -> None:
        if self.settings.redis_url:
            say("using external Redis from REDIS_URL")
            return
        self.redis = PrivateRedis(self.settings.data_dir)
        log = open(self.logs_dir / "redis.log", "ab", buffering=0)
        self.settings.redis_url = self.redis.start(log, preexec_fn=die_with_parent)
        say("redis-server ready (loopback, password-protected)")

    def _prepare_state(self) -> None:
        from unicloud.db.migrate import upgrade
        from unicloud.db.session import session_scope
        from unicloud.services.users import ensure_admin

        upgrade(self.settings)
        with session_scope(self.settings) as session:
            ensure_admin(session, self.settings.data_dir / "admin.token")
        say(f"database ready ({self.settings.sqlalchemy_url.split('://')[0]}); admin token in {self.settings.data_dir / 'admin.token'}")

    def _spawn_children(self) -> None:
        procs = parse_procfile(self.procfile.read_text())
        only = os.environ.get("UNICLOUD_PROCESSES")
        if only:
            wanted = {p.strip() for p in only.split(",") if p.strip()}
            procs = {k: v for k, v in procs.items() if k in wanted}
        env = dict(os.environ)
        env.update(self.settings.to_env())
        env["PYTHONUNBUFFERED"] = "1"
        for name, command in procs.items():
            child = Child(name=name, command=command, log_path=self.logs_dir / f"{name}.log", env=env)
            child.start()
            self.children.append(child)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        pending = {c.name for c in self.children}
        while pending:
            if self.stopping:
                raise UpError("interrupted before the platform was ready")
            for child in self.children:
                if child.name not in pending:
                    continue
                if not child.alive():
                    raise UpError(f"process {child.name!r} exited with status {child.proc.returncode} during start-up; "
                                  f"last lines of {child.log_path}:\n{child.tail()}")
                if time.monotonic() - child.started_at >= ALIVE_GRACE and check(child.name, self.settings):
                    pending.discard(child.name)
            if time.monotonic() > deadline:
                raise UpError(f"not ready after {READY_TIMEOUT:.0f}s: {', '.join(sorted(pending))}; see {self.logs_dir}")
            time.sleep(0.2)

    # -- run ---------------------------------------------------------------------------------
    def _watch(self) -> None:
        """Restart crashed children with exponential backoff until asked to stop."""
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                if child.alive() or self.stopping:
                    continue
                if child.next_start == 0.0:
                    delay = min(30.0, 2.0 ** min(child.restarts, 5))
                    child.next_start = now + delay
                    say(f"{child.name} exited with status {child.proc.returncode}; restarting in {delay:.0f}s "
                        f"(log: {child.log_path})")
                elif now >= child.next_start:
                    child.restarts += 1
                    child.next_start = 0.0
                    child.start()
            time.sleep(0.25)

    def shutdown(self) -> None:
        order = {name: i for i, name in enumerate(STOP_ORDER)}
        for child in sorted(self.children, key=lambda c: order.get(c.name, len(order))):
            child.stop()
            child.close()
        stopped = stop_all_vms(self.settings.vms_dir)
        if stopped:
            say(f"stopped {stopped} VM(s)")
        if self.redis is not None:
            self.redis.stop()
        say("stopped")

    def run(self) -> int:
        def on_signal(signum, _frame):
            self.stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            self._lock_data_dir()
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            self._check_ports()
            self._start_redis()
            self._prepare_state()
            self._spawn_children()
            self._wait_ready()
            print(ready_line(self.settings), flush=True)
            self._watch()
            return 0
        except UpError as exc:
            say(f"error: {exc}")
            return 1
        finally:
            self.shutdown()


def run(settings: Settings, procfile: Path | None = None) -> int:
    return Supervisor(settings, procfile).run()
