"""The reconciler: every pass compares desired state with the instances and takes the next step.

Desired state per app: the newest pending release if there is one (the deploy target), else the
current release, times `formation["web"]` instances. Each pass is idempotent: it re-reads the
database, so a scheduler restart resumes where the last one stopped. Long waits (VM boots, health
checks) never block a pass: they run in threads and are looked at on later passes.

Deploy cycle for a release R: boot R's instances (or reuse still-warm instances booted from the
same image, config and command, which makes a rollback a router switch) → health-check them →
publish a routing table with only R's instances and wait for the router to confirm it serves it →
R becomes current and `succeeded` → the previous release's instances leave the router but stay
warm for `UNICLOUD_WARM_WINDOW` seconds, then are stopped. A release that fails its checks never
gets traffic: it is marked `failed` with the reason and its instances are stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select, true
from sqlalchemy.orm import Session

from unicloud.celery_app import celery, host_queue
from unicloud.config import Settings
from unicloud.db.models import App, Host, Instance, Release, utcnow
from unicloud.db.session import session_scope
from unicloud.redis_client import get_redis
from unicloud.router import table as rt
from unicloud.image.memory import instance_memory_mb
from unicloud.scheduler import hosts as hostlive
from unicloud.scheduler.events import event
from unicloud.hypervisor.agent import image_dir_for
from unicloud.scheduler.health import (
    DEFAULT_DEADLINE,
    Check,
    HealthChecker,
    HealthSpecError,
    declared_files,
    probe,
    spec_from_manifest,
)
from unicloud.scheduler.placement import NoCapacity, Placer
from unicloud.scheduler.transitions import ACTIVE, LIVE, transition
from unicloud.scheduler.wakeup import WAKE_CHANNEL, wake  # noqa: F401 - the callers' import path
from unicloud.services.releases import announce_finished

WARM_WINDOW = float(os.environ.get("UNICLOUD_WARM_WINDOW", "120"))
DRAIN_GRACE = float(os.environ.get("UNICLOUD_DRAIN_GRACE", "10"))
STOP_GRACE = int(os.environ.get("UNICLOUD_STOP_GRACE", "10"))  # SIGTERM → SIGKILL inside the VM
ROUTER_ACK_TIMEOUT = float(os.environ.get("UNICLOUD_ROUTER_ACK_TIMEOUT", "10"))
BACKOFF_BASE = float(os.environ.get("UNICLOUD_RESTART_BACKOFF", "1"))
BACKOFF_MAX = float(os.environ.get("UNICLOUD_RESTART_BACKOFF_MAX", "300"))
STABLE_AFTER = 600.0  # an instance up this long before crashing restarts without backoff

START_TASK = "unicloud.host.start_instance"
STOP_TASK = "unicloud.host.stop_instance"


def age(ts: dt.datetime | None) -> float:
    return (utcnow() - ts).total_seconds() if ts else 1e9


def dyno(inst: Instance) -> str:
    return f"{inst.process_type}.{inst.index}"


def memory_for(app: App, release: Release) -> int:
    """The app's memory setting, raised to what its image needs to unpack and start."""
    return instance_memory_mb(app.memory_mb, release.image.manifest if release.image else None)


def boot_signature(release: Release, memory_mb: int) -> str:
    """Instances with equal signatures are interchangeable: same image, config and command."""
    return json.dumps([release.image_id, release.config or {}, (release.process_types or {}).get("web"), memory_mb],
                      sort_keys=True)


def desired_web(app: App) -> int:
    n = (app.formation or {}).get("web", 1)
    try:
        n = int(n)
    except (TypeError, ValueError):
        return 0
    return max(0, n)


def restart_delay(inst: Instance) -> float:
    if inst.started_at and inst.updated_at and (inst.updated_at - inst.started_at).total_seconds() > STABLE_AFTER:
        return 0.0
    return min(BACKOFF_MAX, BACKOFF_BASE * (2 ** min(inst.restarts, 20)))


@dataclass
class Switch:
    release_id: int
    since: float
    published: bool = False


class Reconciler:
    def __init__(self, settings: Settings | None = None, wake: threading.Event | None = None):
        """`wake` is set whenever a health check ends (the service loop waits on it)."""
        self.settings = settings or Settings.from_env()
        self.r = get_redis(self.settings)
        self.wakeup = wake or threading.Event()
        self.checker = HealthChecker(finished=self.wakeup)
        self.switching: dict[int, Switch] = {}
        self.stop_sent: dict[str, float] = {}
        self.deploy_started: dict[int, float] = {}
        self.said: set[tuple] = set()  # (app, message key) already logged, to avoid repeating every pass
        self.outbox: list[tuple[str, list, str]] = []
        self.finished: list[int] = []  # releases that ended this pass, announced after the commit
        self.published_version: str | None = None
        self.published_at = 0.0

    # ------------------------------------------------------------------ the pass
    def tick(self) -> None:
        with session_scope(self.settings) as s:
            hosts = self._live_hosts(s)
            self._reap_lost_hosts(s, hosts)
            app_ids = list(s.scalars(select(App.id).order_by(App.id)))
        live_ids = {h.id for h in hosts}
        for app_id in app_ids:
            with session_scope(self.settings) as s:
                app = s.get(App, app_id)
                if app is None:
                    continue
                everyone = list(s.scalars(select(Instance).where(Instance.state.in_(LIVE))))
                placer = Placer(hosts, everyone)
                self.reconcile_app(s, app, placer, live_ids)
            self._flush_outbox()
        self._publish_routes(live_ids)
        self._forget_stale_checks()

    def pending_switch(self) -> bool:
        return bool(self.switching)

    def _again(self) -> None:
        """Ask for another pass right after this one (the service loop waits on `wakeup`)."""
        self.wakeup.set()

    # ------------------------------------------------------------------ hosts
    def _live_hosts(self, s: Session) -> list[Host]:
        return [h for h in s.scalars(select(Host).order_by(Host.id)) if hostlive.is_live(self.r, h.name)]

    def _reap_lost_hosts(self, s: Session, live: list[Host]) -> None:
        """Instances on a host that stopped heartbeating are gone as far as traffic is concerned."""
        live_ids = {h.id for h in live}
        lost = s.scalars(select(Instance).where(Instance.state.in_(ACTIVE), Instance.host_id.is_not(None),
                                                Instance.host_id.not_in(live_ids) if live_ids else true()))
        for inst in list(lost):
            host = s.get(Host, inst.host_id)
            if inst.state == "draining":
                transition(s, inst.id, ["draining"], state="stopped", last_error=f"host {host.name} lost")
                continue
            if transition(s, inst.id, ["starting", "up"], state="crashed",
                          last_error=f"host {host.name} stopped sending heartbeats"):
                event(self.r, inst.app.name, f"{dyno(inst)} lost: host {host.name} stopped sending heartbeats")

    # ------------------------------------------------------------------ per app
    def reconcile_app(self, s: Session, app: App, placer: Placer, live_ids: set[int]) -> None:
        instances = list(s.scalars(select(Instance).where(Instance.app_id == app.id, Instance.state.in_(LIVE))
                                   .order_by(Instance.index, Instance.id)))
        target = self._deploy_target(s, app)
        if target is not None:
            self._deploy_step(s, app, target, instances, placer)
        elif app.current_release is not None:
            self._steady_step(s, app, app.current_release, instances, placer)
        self._retire(s, app, instances, target)

    def _deploy_target(self, s: Session, app: App) -> Release | None:
        sw = self.switching.get(app.id)
        if sw is not None:
            rel = s.get(Release, sw.release_id)
            if rel is not None and rel.status == "deploying":
                return rel
            self.switching.pop(app.id, None)
        waiting = list(s.scalars(select(Release).where(Release.app_id == app.id,
                                                       Release.status.in_(("pending", "deploying")))
                                 .order_by(Release.version.desc())))
        if not waiting:
            return None
        newest, older = waiting[0], waiting[1:]
        for rel in older:
            self._fail(s, app, rel, f"superseded by v{newest.version} before it went live")
        if newest.status == "pending":
            newest.status = "deploying"
            self.deploy_started[newest.id] = time.monotonic()
            event(self.r, app.name, f"Deploying v{newest.version} ({newest.description})")
        self.deploy_started.setdefault(newest.id, time.monotonic())
        return newest

    # ------------------------------------------------------------------ deploy cycle
    def _deploy_step(self, s: Session, app: App, rel: Release, instances: list[Instance], placer: Placer) -> None:
        n = desired_web(app)
        cmd = (rel.process_types or {}).get("web")
        if n > 0 and not cmd:
            self._fail(s, app, rel, "the release has no 'web' process type (add one to the Procfile)")
            return
        if rel.image is None:
            self._fail(s, app, rel, "the release has no image")
            return
        mine = [i for i in instances if i.release_id == rel.id and i.process_type == "web"]
        if not mine and n > 0 and self._warm_candidates(app, rel, instances):
            # A serving instance may be relabelled: only for a release whose checks are valid.
            try:
                self._health_spec(rel)
            except HealthSpecError as exc:
                self._fail(s, app, rel, f"invalid health check: {exc}")
                return
            mine = self._reuse_warm(s, app, rel, instances, n)
        have = {i.index for i in mine}
        booted = False
        for idx in range(1, n + 1):
            if idx not in have:
                try:
                    mine.append(self._boot(s, app, rel, idx, placer))
                    booted = True
                except NoCapacity as exc:
                    self._say(app, ("nocap", rel.id), f"v{rel.version} is waiting for capacity: {exc}")
                    if time.monotonic() - self.deploy_started[rel.id] > DEFAULT_DEADLINE:
                        self._fail(s, app, rel, str(exc))
                    return
        if booted:
            # Send the start tasks first (they go out once this pass commits); reading the checks
            # from a new image takes a while, so the next pass does it while the VMs boot.
            self._again()
            return
        try:
            spec = self._health_spec(rel)
        except HealthSpecError as exc:
            self._fail(s, app, rel, f"invalid health check: {exc}")
            return
        ready = 0
        for inst in sorted(mine, key=lambda i: i.index):
            if inst.index > n:
                continue
            if inst.state == "crashed":
                why = inst.last_error or "the instance crashed"
                status = f"exited with status {inst.exit_code}" if inst.exit_code is not None else "crashed"
                self._fail(s, app, rel, f"{dyno(inst)} {status} before passing its health check: {why}")
                return
            if inst.state == "up":
                ready += 1
                continue
            res = self._check(inst, spec)
            if res is None:
                continue
            if not res.ok:
                self._fail(s, app, rel, f"{dyno(inst)} failed its health check: {res.detail}")
                return
            if transition(s, inst.id, ["starting"], state="up"):
                event(self.r, app.name, f"{dyno(inst)} of v{rel.version} passed its health check in {res.elapsed:.1f}s ({res.detail})")
                ready += 1
        if ready < n:
            return
        sw = self.switching.get(app.id)
        if sw is None:
            self.switching[app.id] = Switch(rel.id, time.monotonic())
            return  # this pass's routing table sends traffic to rel; finish once the router confirms
        acked = sw.published and rt.applied_version(self.r) == self.published_version
        waited = time.monotonic() - sw.since
        if not acked and waited < ROUTER_ACK_TIMEOUT:
            return
        if not acked:
            self._say(app, ("noack", rel.id), f"the router did not confirm the switch to v{rel.version} within {ROUTER_ACK_TIMEOUT:.0f}s")
        self._go_live(s, app, rel, instances)

    def _go_live(self, s: Session, app: App, rel: Release, instances: list[Instance]) -> None:
        previous = app.current_release
        app.current_release_id = rel.id
        rel.status = "succeeded"
        rel.finished_at = utcnow()
        self.finished.append(rel.id)
        self.switching.pop(app.id, None)
        took = time.monotonic() - self.deploy_started.pop(rel.id, time.monotonic())
        live = sorted(dyno(i) for i in instances if i.release_id == rel.id and i.state == "up")
        event(self.r, app.name, f"v{rel.version} is live ({', '.join(live) or 'no web instances'}; deploy took {took:.1f}s)")
        old = [i for i in instances if i.release_id != rel.id and i.state == "up"]
        for inst in old:
            transition(s, inst.id, ["up"], state="draining")
        if old and previous is not None:
            event(self.r, app.name, f"v{previous.version} left the router; its instances stay warm for "
                                    f"{max(WARM_WINDOW, DRAIN_GRACE):.0f}s for a fast rollback")

    def _warm_candidates(self, app: App, rel: Release, instances: list[Instance]) -> list[Instance]:
        """Running instances booted from the same image, config and command as `rel`."""
        want = boot_signature(rel, memory_for(app, rel))
        warm = [i for i in instances if i.state in ("up", "draining") and i.process_type == "web"
                and i.release_id != rel.id and boot_signature(i.release, i.memory_mb) == want
                and i.id not in self.stop_sent]
        return sorted(warm, key=lambda i: (i.state != "up", i.index))

    def _reuse_warm(self, s: Session, app: App, rel: Release, instances: list[Instance], n: int) -> list[Instance]:
        """Instances booted from the same image, config and command can serve `rel` as they are."""
        warm = self._warm_candidates(app, rel, instances)
        taken: list[Instance] = []
        for inst in warm:
            if len(taken) == n:
                break
            # One quick probe: a warm instance that stopped answering is not worth the shortcut.
            ok, _, detail = probe("127.0.0.1", inst.host_port, Check(timeout=2.0))
            if not ok:
                self._say(app, ("warm-dead", inst.id), f"not reusing {dyno(inst)} of v{inst.release.version}: {detail}")
                continue
            idx, old_version, was = len(taken) + 1, inst.release.version, inst.state
            # An instance that is serving keeps serving: the switch only relabels it.
            if transition(s, inst.id, [was], release_id=rel.id, index=idx, state="up"):
                taken.append(inst)
                event(self.r, app.name, f"Reusing warm {inst.process_type}.{idx} of v{old_version} for "
                                        f"v{rel.version} ({detail})")
        return taken

    def _boot(self, s: Session, app: App, rel: Release, idx: int, placer: Placer) -> Instance:
        memory = memory_for(app, rel)
        host, port = placer.place(memory)
        inst = Instance(app_id=app.id, release_id=rel.id, process_type="web", index=idx, host_id=host.id,
                        host_port=port, memory_mb=memory, state="starting")
        s.add(inst)
        s.flush()
        self.outbox.append((START_TASK, [inst.id], host_queue(host.name)))
        event(self.r, app.name, f"Starting web.{idx} of v{rel.version} on {host.name} (port {port})")
        return inst

    def _health_spec(self, rel: Release):
        if rel.image is None:
            return spec_from_manifest(None)
        manifest = rel.image.manifest or {}
        try:
            image_dir = image_dir_for(self.settings, rel.image.digest)
        except ValueError:
            return spec_from_manifest(manifest)
        return spec_from_manifest(manifest, declared_files(str(image_dir), manifest.get("workdir") or "/app"))

    def _check(self, inst: Instance, spec):
        key = f"{inst.id}:{inst.restarts}"
        self.checker.ensure(key, "127.0.0.1", inst.host_port, spec, time.monotonic())
        return self.checker.result(key)

    def _fail(self, s: Session, app: App, rel: Release, reason: str) -> None:
        rel.status = "failed"
        rel.failure_reason = reason
        rel.finished_at = utcnow()
        self.finished.append(rel.id)
        self.switching.pop(app.id, None)
        self.deploy_started.pop(rel.id, None)
        for inst in s.scalars(select(Instance).where(Instance.release_id == rel.id, Instance.state.in_(LIVE))):
            had_vm = inst.state in ACTIVE
            transition(s, inst.id, LIVE, state="failed", last_error=inst.last_error or reason)
            if had_vm and inst.host is not None:
                self._stop(inst, grace=0)
        current = app.current_release
        keeps = f"v{current.version} keeps serving" if current is not None else "no earlier release was serving"
        event(self.r, app.name, f"v{rel.version} failed: {reason}; {keeps}")

    # ------------------------------------------------------------------ steady state
    def _steady_step(self, s: Session, app: App, rel: Release, instances: list[Instance], placer: Placer) -> None:
        n = desired_web(app)
        spec = None
        mine = [i for i in instances if i.release_id == rel.id and i.process_type == "web"]
        by_index: dict[int, Instance] = {}
        for inst in mine:
            keep = by_index.get(inst.index)
            if keep is None or (keep.state != "up" and inst.state == "up"):
                by_index[inst.index] = inst
        for idx in range(1, n + 1):
            inst = by_index.get(idx)
            if inst is None:
                if not (rel.process_types or {}).get("web"):
                    continue
                try:
                    self._boot(s, app, rel, idx, placer)
                except NoCapacity as exc:
                    self._say(app, ("nocap", idx), f"cannot start web.{idx}: {exc}")
                continue
            if inst.state == "crashed":
                self._maybe_restart(s, app, inst, placer)
            elif inst.state == "starting":
                if spec is None:
                    try:
                        spec = self._health_spec(rel)
                    except HealthSpecError:
                        spec = spec_from_manifest(None)
                res = self._check(inst, spec)
                if res is None:
                    continue
                if res.ok:
                    if transition(s, inst.id, ["starting"], state="up"):
                        event(self.r, app.name, f"{dyno(inst)} is up ({res.detail}, {res.elapsed:.1f}s)")
                elif transition(s, inst.id, ["starting"], state="crashed", last_error=f"health check: {res.detail}"):
                    event(self.r, app.name, f"{dyno(inst)} failed its health check: {res.detail}")
                    self._stop(inst, grace=0)
        # Anything beyond the formation, or duplicates of an index, goes away.
        keep_ids = {by_index[i].id for i in range(1, n + 1) if i in by_index}
        for inst in mine:
            if inst.id in keep_ids:
                continue
            if inst.state == "up":
                if transition(s, inst.id, ["up"], state="draining"):
                    event(self.r, app.name, f"Scaling down: {dyno(inst)} leaves the router, stopping in {DRAIN_GRACE:.0f}s")
            elif inst.state in ("starting", "crashed"):
                had_vm = inst.state == "starting"
                transition(s, inst.id, ["starting", "crashed"], state="stopped")
                if had_vm:
                    self._stop(inst, grace=0)

    def _maybe_restart(self, s: Session, app: App, inst: Instance, placer: Placer) -> None:
        delay = restart_delay(inst)
        waited = age(inst.updated_at)
        if waited < delay:
            self._say(app, ("crash", inst.id, inst.restarts),
                      f"{dyno(inst)} crashed ({self._exit_text(inst)}); restarting in {delay - waited:.0f}s")
            return
        try:
            host, port = placer.place(inst.memory_mb)
        except NoCapacity as exc:
            self._say(app, ("nocap-restart", inst.id), f"cannot restart {dyno(inst)}: {exc}")
            return
        if transition(s, inst.id, ["crashed"], state="starting", host_id=host.id, host_port=port,
                      restarts=inst.restarts + 1, started_at=None):
            self.outbox.append((START_TASK, [inst.id], host_queue(host.name)))
            event(self.r, app.name, f"Restarting {dyno(inst)} on {host.name} (restart #{inst.restarts}, "
                                    f"last {self._exit_text(inst)})")

    @staticmethod
    def _exit_text(inst: Instance) -> str:
        return f"exit status {inst.exit_code}" if inst.exit_code is not None else (inst.last_error or "crashed")

    # ------------------------------------------------------------------ retiring old instances
    def _retire(self, s: Session, app: App, instances: list[Instance], target: Release | None) -> None:
        keep_release = {app.current_release_id, target.id if target else None}
        for inst in instances:
            s.refresh(inst)
            if inst.state in ("up", "starting") and inst.release_id not in keep_release:
                # e.g. left over from a deploy that was interrupted by a restart of the scheduler
                if inst.state == "up":
                    transition(s, inst.id, ["up"], state="draining")
                else:
                    transition(s, inst.id, ["starting"], state="stopped")
                    self._stop(inst, grace=0)
            elif inst.state == "crashed" and inst.release_id not in keep_release:
                transition(s, inst.id, ["crashed"], state="stopped")  # nobody will restart it
            elif inst.state == "draining":
                window = DRAIN_GRACE if inst.release_id == app.current_release_id else max(WARM_WINDOW, DRAIN_GRACE)
                if age(inst.updated_at) >= window:
                    sent = self.stop_sent.get(inst.id)
                    if sent is None or time.monotonic() - sent > 60:
                        if sent is None:
                            event(self.r, app.name, f"Stopping {dyno(inst)} of v{inst.release.version}")
                        self._stop(inst, grace=STOP_GRACE)

    def _stop(self, inst: Instance, grace: int) -> None:
        if inst.host is None:
            return
        self.stop_sent[inst.id] = time.monotonic()
        self.outbox.append((STOP_TASK, [inst.id, grace], host_queue(inst.host.name)))

    # ------------------------------------------------------------------ routing
    def routing_table(self, live_ids: set[int]) -> rt.RoutingTable:
        with session_scope(self.settings) as s:
            apps = {}
            for app in s.scalars(select(App).order_by(App.name)):
                sw = self.switching.get(app.id)
                routed = sw.release_id if sw else app.current_release_id
                backends = []
                if routed is not None:
                    for inst in s.scalars(select(Instance).where(Instance.release_id == routed, Instance.state == "up",
                                                                 Instance.process_type == "web")):
                        if inst.host_port and inst.host_id in live_ids:
                            backends.append(rt.Backend(f"127.0.0.1:{inst.host_port}", dyno(inst), inst.id))
                apps[app.name] = backends
        return rt.RoutingTable(apps)

    def _publish_routes(self, live_ids: set[int]) -> None:
        table = self.routing_table(live_ids)
        version = table.version
        now = time.monotonic()
        if version != self.published_version or now - self.published_at > 5:
            rt.publish(self.r, table)
            self.published_version, self.published_at = version, now
        for sw in self.switching.values():
            sw.published = True

    # ------------------------------------------------------------------ plumbing
    def _flush_outbox(self) -> None:
        """Called after the app's changes are committed: start/stop tasks, then tell whoever waits
        for a release (the git push) that it ended."""
        while self.finished:
            release_id = self.finished.pop(0)
            try:
                announce_finished(self.r, release_id)
            except Exception as exc:  # the waiter falls back to re-reading the database
                print(f"scheduler: could not announce release {release_id}: {exc}", flush=True)
        while self.outbox:
            name, args, queue = self.outbox.pop(0)
            try:
                celery.send_task(name, args=args, queue=queue)
            except Exception as exc:  # the health-check deadline / restart logic will notice
                print(f"scheduler: could not send {name}{args} to {queue}: {exc}", flush=True)

    def _forget_stale_checks(self) -> None:
        if not self.checker.running:
            return
        with session_scope(self.settings) as s:
            rows = {i.id: i for i in s.scalars(select(Instance).where(Instance.state == "starting"))}
        for key in self.checker.keys():
            inst_id, _, restarts = key.partition(":")
            inst = rows.get(inst_id)
            if inst is None or str(inst.restarts) != restarts:
                self.checker.forget(key)

    def _say(self, app: App, key: tuple, line: str) -> None:
        if (app.id, key) not in self.said:
            self.said.add((app.id, key))
            event(self.r, app.name, line)
