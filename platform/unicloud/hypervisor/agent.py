"""The host agent: runs this host's VMs for the scheduler and reports what happens to them.

One agent per host name (`UNICLOUD_HOST_NAME`); several agents on one machine are separate hosts
with their own VM directory (`DIR/vms/<host>/`), capacity and Celery queue (`host.<name>`).
Besides the start/stop tasks, a monitor thread
- ships each VM's console to the app's log stream (`app[web.N]`; init's own lines as `unicloud[web.N]`),
- notices VMs that ended: an instance that should be running becomes `crashed` with the app's exit
  status and its last output, which the scheduler restarts with backoff,
- after an agent restart adopts the VMs that kept running (QEMU is daemonized, not our child),
  so apps keep serving while the agent is away.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from unicloud import logs
from unicloud.celery_app import host_queue
from unicloud.config import Settings
from unicloud.db.models import Host, Instance, utcnow
from unicloud.db.session import session_scope
from unicloud.redis_client import get_redis
from unicloud.scheduler import hosts as hostlive
from unicloud.scheduler.transitions import ACTIVE, transition
from unicloud.scheduler.wakeup import wake

log = logging.getLogger("unicloud.agent")

POLL_SECONDS = 0.5
DB_SWEEP_SECONDS = 5.0
TAIL_LINES = 20
_PRINTK = re.compile(r"^\[\s*\d+\.\d+\]")


def default_capacity_mb() -> int:
    """Most of this machine's RAM; QEMU under TCG also needs ~100 MB of its own per VM."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(int(line.split()[1]) / 1024 * 0.75)
    except (OSError, ValueError):
        pass
    return 4096


def image_dir_for(settings: Settings, digest: str) -> Path:
    """Image store path; digests are stored as `sha256:<hex>` or bare hex."""
    hexdigest = digest.split(":", 1)[1] if ":" in digest else digest
    if not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise ValueError(f"invalid image digest {digest!r}")
    return settings.images_dir / hexdigest


def dyno_name(inst: Instance) -> str:
    return f"{inst.process_type}.{inst.index}"


@dataclass
class Watched:
    instance_id: str
    app: str
    dyno: str
    path: Path
    offset: int = 0
    inode: int | None = None
    partial: bytes = b""
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))


class Agent:
    def __init__(self, settings: Settings | None = None, vms=None):
        self.settings = settings or Settings.from_env()
        self.name = self.settings.host_name
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", self.name):
            raise ValueError(f"UNICLOUD_HOST_NAME {self.name!r}: use lowercase letters, digits and '-'")
        if vms is None:
            from unicloud.hypervisor.vm import VMManager
            vms = VMManager(self.settings.vms_dir / self.name)
        self.vms = vms
        self.r = get_redis(self.settings)
        self.capacity_mb = int(os.environ.get("UNICLOUD_HOST_CAPACITY_MB") or default_capacity_mb())
        self.watched: dict[str, Watched] = {}
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.host_id: int | None = None
        self.offsets_key = f"agent:{self.name}:console"

    # ------------------------------------------------------------------ lifecycle
    def boot(self) -> None:
        """Register, adopt surviving VMs, then start heartbeat and monitor threads."""
        from unicloud.hypervisor.accel import probe_accelerator

        accel = probe_accelerator()
        if accel.name != "kvm":
            log.warning("host %s: VMs run under TCG (%s); expect boots of several seconds", self.name, accel.reason)
        with session_scope(self.settings) as s:
            host = s.scalar(select(Host).where(Host.name == self.name))
            if host is None:
                host = Host(name=self.name, queue=host_queue(self.name))
                s.add(host)
            host.queue, host.capacity_mb, host.accel = host_queue(self.name), self.capacity_mb, accel.name
            host.last_heartbeat = utcnow()
            s.flush()
            self.host_id = host.id
        hostlive.beat(self.r, self.name)
        self.adopt()
        threading.Thread(target=self._heartbeat_loop, daemon=True, name="heartbeat").start()
        threading.Thread(target=self._monitor_loop, daemon=True, name="monitor").start()
        log.info("host %s registered: queue %s, %d MB, accel %s", self.name, host_queue(self.name),
                 self.capacity_mb, accel.name)

    def _heartbeat_loop(self) -> None:
        last_db = 0.0
        while not self.stopping.wait(hostlive.HEARTBEAT_EVERY):
            try:
                hostlive.beat(self.r, self.name)
                if time.monotonic() - last_db > 30:
                    with session_scope(self.settings) as s:
                        host = s.get(Host, self.host_id)
                        if host is not None:
                            host.last_heartbeat = utcnow()
                    last_db = time.monotonic()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    def _monitor_loop(self) -> None:
        last_sweep = 0.0
        while not self.stopping.wait(POLL_SECONDS):
            try:
                self.poll()
                if time.monotonic() - last_sweep > DB_SWEEP_SECONDS:
                    self.sweep()
                    last_sweep = time.monotonic()
            except Exception:
                log.exception("monitor pass failed")

    # ------------------------------------------------------------------ tasks
    def start_instance(self, instance_id: str) -> dict:
        with session_scope(self.settings) as s:
            inst = s.get(Instance, instance_id)
            if inst is None:
                return {"skipped": "no such instance"}
            if inst.state != "starting":
                return {"skipped": f"instance is {inst.state}"}
            if inst.host is None or inst.host.name != self.name:
                return {"skipped": f"instance belongs to host {inst.host.name if inst.host else None}"}
            rel, app, dyno = inst.release, inst.app.name, dyno_name(inst)
            cmd = (rel.process_types or {}).get(inst.process_type)
            digest = rel.image.digest if rel.image else None
            config = dict(rel.config or {})
            port, memory = inst.host_port, inst.memory_mb
        if self._running(instance_id) and self.vms.status(instance_id).host_port != port:
            self.vms.stop(instance_id, grace=0)  # a stale VM of this instance from before a re-placement
        if self._running(instance_id):  # a redelivered message: the VM is already up
            with self.lock:
                if instance_id not in self.watched:
                    self.watch(instance_id, app, dyno, offset=int(self.r.hget(self.offsets_key, instance_id) or 0))
            return {"skipped": "already running"}
        try:
            if not cmd:
                raise ValueError(f"release has no {dyno.split('.')[0]!r} process type")
            if digest is None:
                raise ValueError("release has no image")
            image_dir = image_dir_for(self.settings, digest)
            # The image's own env (PATH, ...) is baked into it as /etc/unicloud/image-env.
            env = {**config, "PORT": "8080", "DYNO": dyno}
            logs.emit(self.r, app, "unicloud", dyno, f"Starting process with command `{cmd}`")
            self.vms.start(instance_id, image_dir, env=env, cmd=cmd, memory_mb=memory, host_port=port)
        except Exception as exc:
            reason = f"could not boot the VM: {exc}"
            with session_scope(self.settings) as s:
                transition(s, instance_id, ["starting"], state="crashed", last_error=reason, exit_code=None)
            self._wake_scheduler()
            logs.emit(self.r, app, "unicloud", dyno, reason)
            logs.emit(self.r, app, "unicloud", dyno, "State changed from starting to crashed")
            return {"error": reason}
        with session_scope(self.settings) as s:
            still_wanted = transition(s, instance_id, ["starting"], started_at=utcnow())
        if not still_wanted:  # the scheduler gave up on it while we were booting
            self.vms.stop(instance_id, grace=0)
            return {"skipped": "no longer wanted"}
        self.watch(instance_id, app, dyno, offset=0)
        return {"started": instance_id, "port": port}

    def stop_instance(self, instance_id: str, grace: float = 10) -> dict:
        from unicloud.hypervisor.vm import VMNotFound

        with session_scope(self.settings) as s:
            inst = s.get(Instance, instance_id)
            app, dyno = (inst.app.name, dyno_name(inst)) if inst else (None, None)
        try:
            running = self.vms.status(instance_id).running
        except VMNotFound:
            running = False
        if running and app:
            logs.emit(self.r, app, "unicloud", dyno, f"Stopping process with SIGTERM (grace {grace:g}s)")
        info = self.vms.stop(instance_id, grace=grace) if running else None
        with self.lock:
            w = self.watched.pop(instance_id, None)
        if w is not None:
            self._ship(w)
        code = self._exit_code(info) if info else None
        if running and app:
            logs.emit(self.r, app, "unicloud", dyno, f"Process exited with status {code if code is not None else 'unknown'}")
        if inst is not None:
            with session_scope(self.settings) as s:
                transition(s, instance_id, ACTIVE, state="stopped", exit_code=code)
        self.r.hdel(self.offsets_key, instance_id)
        try:  # its console went to the log stream; the initrd copy is the size of the image
            self.vms.remove(instance_id)
        except Exception:
            pass
        return {"stopped": instance_id, "exit_code": code}

    # ------------------------------------------------------------------ monitoring
    def watch(self, instance_id: str, app: str, dyno: str, offset: int = 0) -> None:
        path = self.vms.console_path(instance_id)
        with self.lock:
            self.watched[instance_id] = Watched(instance_id, app, dyno, path, offset)

    def _running(self, instance_id: str) -> bool:
        try:
            return self.vms.status(instance_id).running
        except Exception:
            return False

    def poll(self) -> None:
        with self.lock:
            items = list(self.watched.values())
        for w in items:
            self._ship(w)
            try:
                info = self.vms.status(w.instance_id)
            except Exception:
                info = None
            if info is None or not info.running:
                with self.lock:
                    if self.watched.get(w.instance_id) is not w:
                        continue  # a stop task took it over
                    self.watched.pop(w.instance_id, None)
                self._ship(w)
                self._exited(w, info)

    def _ship(self, w: Watched) -> None:
        """Send new complete console lines to the app's stream."""
        try:
            st = os.stat(w.path)
        except OSError:
            return
        if w.inode != st.st_ino or st.st_size < w.offset:
            if w.inode is not None:
                w.offset = 0  # a restart recreated the console file
            w.inode = st.st_ino
        if st.st_size <= w.offset:
            return
        with open(w.path, "rb") as f:
            f.seek(w.offset)
            data = f.read(st.st_size - w.offset)
        w.offset += len(data)
        lines = (w.partial + data).split(b"\n")
        w.partial = lines.pop()
        if len(w.partial) > logs.MAX_LINE_CHARS:
            lines.append(w.partial)
            w.partial = b""
        pipe = self.r.pipeline(transaction=False)
        for raw in lines:
            line = logs.sanitize(raw)
            if not line.strip():
                continue
            w.tail.append(line)
            internal = line.startswith("unicloud-init:") or _PRINTK.match(line)
            logs.emit(pipe, w.app, "unicloud" if internal else "app", w.dyno, line)
        pipe.hset(self.offsets_key, w.instance_id, w.offset)
        pipe.execute()

    @staticmethod
    def _exit_code(info) -> int | None:
        if info is None:
            return None
        if info.exit_code is not None:
            return info.exit_code
        if info.signal is not None:
            return 128 + info.signal
        return None

    def _exited(self, w: Watched, info) -> None:
        code = self._exit_code(info)
        last = " | ".join(list(w.tail)[-8:])
        with session_scope(self.settings) as s:
            inst = s.get(Instance, w.instance_id)
            if inst is None:
                return
            was = inst.state
            if was in ("starting", "up"):
                why = (f"exited with status {code}" if code is not None
                       else "the VM ended without an exit status (QEMU killed or crashed)")
                transition(s, w.instance_id, [was], state="crashed", exit_code=code,
                           last_error=f"{why}; last output: {last}" if last else why)
            elif was == "draining":
                transition(s, w.instance_id, ["draining"], state="stopped", exit_code=code)
        if was in ("starting", "up"):
            self._wake_scheduler()  # a deploy waiting on this instance fails now, a restart is planned
        status = code if code is not None else "unknown (the VM was killed)"
        logs.emit(self.r, w.app, "unicloud", w.dyno, f"Process exited with status {status}")
        if was in ("starting", "up"):
            logs.emit(self.r, w.app, "unicloud", w.dyno, f"State changed from {was} to crashed")
        self.r.hdel(self.offsets_key, w.instance_id)

    def _wake_scheduler(self) -> None:
        try:
            wake(self.r)
        except Exception as exc:  # the scheduler's next pass notices the crash anyway
            log.warning("could not wake the scheduler: %s", exc)

    # ------------------------------------------------------------------ adoption and sweeps
    def adopt(self) -> None:
        """Keep serving with the VMs that survived an agent restart; stop the ones nobody wants."""
        offsets = self.r.hgetall(self.offsets_key) or {}
        for info in self.vms.adopt():
            with session_scope(self.settings) as s:
                inst = s.get(Instance, info.instance_id)
                wanted = inst is not None and inst.state in ACTIVE and inst.host_id == self.host_id
                app, dyno = (inst.app.name, dyno_name(inst)) if inst else (None, None)
            if wanted:
                self.watch(info.instance_id, app, dyno, offset=int(offsets.get(info.instance_id, 0)))
                logs.emit(self.r, app, "unicloud", dyno, f"Agent {self.name} restarted; VM adopted (pid {info.pid})")
            else:
                log.info("stopping unwanted VM %s", info.instance_id)
                threading.Thread(target=self.vms.stop, args=(info.instance_id,), kwargs={"grace": 0},
                                 daemon=True).start()
        self.sweep()

    def sweep(self) -> None:
        """Instances the database places here whose VM is gone (host reboot, VM dir removed)."""
        with session_scope(self.settings) as s:
            rows = list(s.scalars(select(Instance).where(Instance.host_id == self.host_id,
                                                         Instance.state.in_(ACTIVE))))
            for inst in rows:
                if inst.id in self.watched:
                    continue
                if inst.state == "starting" and inst.started_at is None:
                    continue  # its start task has not run yet
                if self._running(inst.id):
                    self.watch(inst.id, inst.app.name, dyno_name(inst),
                               offset=int(self.r.hget(self.offsets_key, inst.id) or 0))
                    continue
                if inst.state == "draining":
                    transition(s, inst.id, ["draining"], state="stopped")
                    continue
                code = None
                try:
                    code = self._exit_code(self.vms.status(inst.id))
                except Exception:
                    pass
                why = (f"exited with status {code} while the agent was away" if code is not None
                       else "the VM vanished (not running on its host)")
                if transition(s, inst.id, [inst.state], state="crashed", exit_code=code, last_error=why):
                    logs.emit(self.r, inst.app.name, "unicloud", dyno_name(inst),
                              f"{why[0].upper()}{why[1:]}; State changed to crashed")


_agent: Agent | None = None
_agent_lock = threading.Lock()


def get_agent() -> Agent:
    """The process-wide agent: tasks (threads of the Celery worker) and the monitor share it."""
    global _agent
    with _agent_lock:
        if _agent is None:
            _agent = Agent()
        return _agent
