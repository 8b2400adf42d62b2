"""The router process: keep nginx's config equal to the scheduler's routing table."""

from __future__ import annotations

import re
import signal
import threading
import time

from unicloud.config import Settings
from unicloud.redis_client import get_redis
from unicloud.router import table as rt
from unicloud.router.access_log import AccessLogShipper
from unicloud.router.config import RenderOptions, render
from unicloud.router.nginx import Nginx, NginxError

POLL_SECONDS = 2.0  # re-read the table even without a notification (pub/sub is fire-and-forget)
_DOMAIN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,250}[A-Za-z0-9])?\Z")


def log(msg: str) -> None:
    print(f"router: {msg}", flush=True)


class Router:
    def __init__(self, settings: Settings):
        if not _DOMAIN.match(settings.domain):
            raise ValueError(f"UNICLOUD_DOMAIN {settings.domain!r} is not a valid domain name")
        self.settings = settings
        self.r = get_redis(settings)
        self.nginx = Nginx(settings.router_dir)
        self.table = rt.RoutingTable()
        self.applied: str | None = None
        self.stopping = threading.Event()
        self._dyno_map: dict = {}

    def options(self) -> RenderOptions:
        user = self.nginx.worker_user()
        return RenderOptions(user=user, temp_dir=self.nginx.temp_dir())

    def _read_table(self) -> rt.RoutingTable:
        try:
            return rt.read(self.r)
        except (ValueError, rt.TableError) as exc:
            log(f"ignoring invalid routing table: {exc}")
            return self.table

    def apply(self, table: rt.RoutingTable) -> None:
        started = time.monotonic()
        self.nginx.install(render(self.settings, table, self.options()))
        if self.nginx.running():
            self.nginx.reload()
        self.table = table
        self._dyno_map = table.dyno_by_addr()
        self.applied = table.version
        rt.acknowledge(self.r, table.version)
        routed = sum(1 for b in table.apps.values() if b)
        log(f"applied table {table.version}: {len(table.apps)} apps, {routed} with backends "
            f"({time.monotonic() - started:.3f}s)")

    def start(self) -> None:
        self.nginx.prepare()
        table = self._read_table()
        self.nginx.install(render(self.settings, table, self.options()))
        how = self.nginx.start()
        log(f"nginx {how} (pid {self.nginx.pid}) on {self.settings.bind}:{self.settings.router_port}")
        self.table, self._dyno_map = table, table.dyno_by_addr()
        self.applied = table.version
        rt.acknowledge(self.r, table.version)
        self.shipper = AccessLogShipper(self.settings.router_dir / "logs" / "access.log", self.r,
                                        lambda: self._dyno_map, self.nginx.reopen_logs)
        self.shipper.start()

    def run(self) -> None:
        self.start()
        pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(rt.NOTIFY_CHANNEL)
        last_poll = 0.0
        try:
            while not self.stopping.is_set():
                try:
                    msg = pubsub.get_message(timeout=0.5)
                except Exception as exc:  # Redis restart: resubscribe, keep serving
                    log(f"pub/sub error: {exc}")
                    time.sleep(1)
                    pubsub = self.r.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(rt.NOTIFY_CHANNEL)
                    continue
                now = time.monotonic()
                if msg is None and now - last_poll < POLL_SECONDS:
                    continue
                last_poll = now
                if not self.nginx.running():
                    log("nginx exited; starting it again")
                    self.nginx.start()
                table = self._read_table()
                if table.version != self.applied:
                    try:
                        self.apply(table)
                    except NginxError as exc:
                        log(f"keeping the previous config: {exc}")
        finally:
            self.shipper.stopped.set()
            log("stopping nginx gracefully")
            self.nginx.stop()


def main() -> None:
    router = Router(Settings.from_env())
    signal.signal(signal.SIGTERM, lambda *_: router.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: router.stopping.set())
    router.run()
