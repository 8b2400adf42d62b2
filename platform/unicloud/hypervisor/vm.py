"""Start, stop, inspect and re-adopt the QEMU microvms of one host.

Each VM lives in `vms_dir/<instance-id>/`: `initrd` (image rootfs + boot config), `qemu.pid`,
`qmp.sock`, `control.sock`, `console.log`, `qemu.err` and `vm.json` (what it was started with).
QEMU is started with `-daemonize`, so it runs in its own session, is not a child of the agent,
and outlives agent restarts; `adopt()` finds it again from these files.

Graceful stop: microvm has no ACPI, so QMP `system_powerdown` does nothing. `stop()` writes
"TERM" to the guest's second UART (control.sock); init forwards SIGTERM to the app's process
group, and when the app exits init prints its status and restarts the machine, which ends QEMU
(-no-reboot). If the VM is still up after `grace` seconds, QMP `quit`, then SIGKILL.

The app's exit status comes from the console: init prints `unicloud-init: exit status N` or
`unicloud-init: killed by signal S` as the last thing before the VM ends.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from unicloud.hypervisor.accel import Accel, probe_accelerator
from unicloud.hypervisor.bootconfig import build_boot_config
from unicloud.hypervisor.initrd import assemble as assemble_initrd
from unicloud.hypervisor.isolation import Isolation, ensure_isolation
from unicloud.hypervisor.qemu import GUEST_PORT, QemuSpec, build_argv
from unicloud.hypervisor.qmp import QMPError, qmp_command
from unicloud.image.store import ROOTFS_FILE

log = logging.getLogger(__name__)

_INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_STATUS_LINE = re.compile(rb"unicloud-init: (exit status|killed by signal) (\d+)")
_CONSOLE_TAIL = 64 * 1024
_START_TIMEOUT = 60.0
CONTROL_SIGNALS = ("TERM", "INT", "KILL", "HUP", "QUIT", "USR1", "USR2")


class VMError(RuntimeError):
    """A VM operation failed; the message says which VM and why."""


class VMNotFound(VMError):
    pass


@dataclass
class VMInfo:
    instance_id: str
    state: str  # "running" | "exited"
    vm_dir: Path
    console_path: Path
    pid: int | None = None
    host_port: int | None = None
    accel: str | None = None
    started_at: float | None = None
    exit_code: int | None = None  # the app's exit status, if init reported one
    signal: int | None = None  # the signal that killed the app, if init reported one

    @property
    def running(self) -> bool:
        return self.state == "running"


class VMManager:
    """The VMs of this host. Safe to instantiate several times over the same `vms_dir`."""

    def __init__(self, vms_dir: Path, *, accel: Accel | None = None,
                 isolation: Isolation | None = None):
        # Absolute and canonical: the path is part of QEMU's command line, which is how a VM is
        # told apart from an unrelated process that reused its pid.
        self.vms_dir = Path(vms_dir).resolve()
        self._accel = accel
        self._isolation = isolation

    # ------------------------------------------------------------------ paths
    def vm_dir(self, instance_id: str) -> Path:
        if not _INSTANCE_ID.match(instance_id):
            raise VMError(f"invalid instance id {instance_id!r}: use letters, digits, '.', '_', '-' "
                          "(at most 64, starting with a letter or digit)")
        return self.vms_dir / instance_id

    def console_path(self, instance_id: str) -> Path:
        return self.vm_dir(instance_id) / "console.log"

    # ------------------------------------------------------------------ start
    def start(self, instance_id: str, image_dir: Path, *, env: Mapping[str, str], cmd: str,
              memory_mb: int = 128, host_port: int, hostname: str | None = None,
              host_addr: str = "127.0.0.1", quiet: bool = True) -> VMInfo:
        """Boot `image_dir` (kernel + rootfs.cpio.xz) running `cmd` with `env`; return once
        QEMU is up (the app inside may still be starting: health-check the host port)."""
        vm_dir = self.vm_dir(instance_id)
        image_dir = Path(image_dir).resolve()
        kernel, rootfs = image_dir / "kernel", image_dir / ROOTFS_FILE
        for path in (kernel, rootfs):
            if not path.is_file():
                raise VMError(f"{instance_id}: image {image_dir} has no {path.name}")
        if vm_dir.exists() and self.status(instance_id).running:
            raise VMError(f"{instance_id}: already running")
        env = dict(env)
        if env.get("PORT", str(GUEST_PORT)) != str(GUEST_PORT):
            log.warning("%s: PORT=%s overridden: the guest always listens on %d",
                        instance_id, env["PORT"], GUEST_PORT)
        env["PORT"] = str(GUEST_PORT)
        if hostname is None:
            hostname = instance_id.replace("_", "-").replace(".", "-")
            if not _HOSTNAME.match(hostname):
                hostname = "unicloud"
        bootcfg = build_boot_config(env, cmd, hostname=hostname)

        shutil.rmtree(vm_dir, ignore_errors=True)
        vm_dir.mkdir(parents=True, mode=0o700)
        initrd = assemble_initrd(rootfs, bootcfg, vm_dir / "initrd")
        accel = self._accel or probe_accelerator()
        isolation = self._isolation or ensure_isolation()
        spec = QemuSpec(kernel=kernel, initrd=initrd, host_port=host_port, host_addr=host_addr,
                        console_log=vm_dir / "console.log", qmp_socket=vm_dir / "qmp.sock",
                        control_socket=vm_dir / "control.sock", pidfile=vm_dir / "qemu.pid",
                        accel=accel, memory_mb=memory_mb, run_as=isolation.run_as,
                        restrict_network=isolation.restrict_network, quiet=quiet)
        argv = build_argv(spec)
        started_at = time.time()
        with open(vm_dir / "qemu.err", "wb") as err:
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                      start_new_session=True, timeout=_START_TIMEOUT, check=False)
            except subprocess.TimeoutExpired as exc:
                raise VMError(f"{instance_id}: QEMU did not finish starting within "
                              f"{_START_TIMEOUT:g}s") from exc
        if proc.returncode != 0:
            detail = (vm_dir / "qemu.err").read_text(errors="replace").strip()
            raise VMError(f"{instance_id}: QEMU failed to start (exit {proc.returncode}): {detail}")
        pid = self._read_pid(vm_dir)
        if pid is None:
            raise VMError(f"{instance_id}: QEMU started but wrote no pid file")
        meta = {"instance_id": instance_id, "image_dir": str(image_dir), "host_port": host_port,
                "host_addr": host_addr, "memory_mb": memory_mb, "accel": accel.name,
                "accel_reason": accel.reason, "isolation": isolation.reason, "pid": pid,
                "started_at": started_at, "cmd": cmd, "argv": argv}
        tmp = vm_dir / "vm.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(vm_dir / "vm.json")
        log.info("%s: QEMU pid %d (%s), port %s:%d", instance_id, pid, accel.name, host_addr, host_port)
        return self.status(instance_id)

    # ------------------------------------------------------------------ stop
    def stop(self, instance_id: str, grace: float = 10) -> VMInfo:
        """SIGTERM the app through init; after `grace` seconds stop QEMU outright."""
        info = self.status(instance_id)
        if not info.running:
            return info
        try:
            self.signal(instance_id, "TERM")
        except VMError as exc:
            log.warning("%s: graceful stop impossible (%s); quitting QEMU", instance_id, exc)
        else:
            if self._wait_exit(instance_id, grace):
                return self.status(instance_id)
            log.warning("%s: app did not exit within %gs of SIGTERM; quitting QEMU", instance_id, grace)
        vm_dir = self.vm_dir(instance_id)
        try:
            qmp_command(vm_dir / "qmp.sock", "quit", timeout=3)
        except QMPError as exc:
            log.warning("%s: QMP quit failed: %s", instance_id, exc)
        if not self._wait_exit(instance_id, 5):
            pid = self._live_pid(vm_dir)
            if pid:
                os.kill(pid, signal.SIGKILL)
                self._wait_exit(instance_id, 5)
        return self.status(instance_id)

    def signal(self, instance_id: str, name: str = "TERM") -> None:
        """Ask init to send signal `name` (TERM, INT, KILL, HUP, QUIT, USR1, USR2) to the app."""
        if name not in CONTROL_SIGNALS:
            raise VMError(f"unsupported signal {name!r}; use one of {', '.join(CONTROL_SIGNALS)}")
        path = self.vm_dir(instance_id) / "control.sock"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(3)
                sock.connect(str(path))
                sock.sendall(f"{name}\n".encode())
        except OSError as exc:
            raise VMError(f"{instance_id}: cannot reach the control channel {path}: {exc}") from exc

    def _wait_exit(self, instance_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        vm_dir = self.vm_dir(instance_id)
        while self._live_pid(vm_dir):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def remove(self, instance_id: str) -> None:
        """Delete the directory of a VM that is no longer running."""
        if self.status(instance_id).running:
            raise VMError(f"{instance_id}: still running; stop it first")
        shutil.rmtree(self.vm_dir(instance_id))

    # ------------------------------------------------------------------ inspect
    def status(self, instance_id: str) -> VMInfo:
        vm_dir = self.vm_dir(instance_id)
        if not vm_dir.is_dir():
            raise VMNotFound(f"{instance_id}: no such VM in {self.vms_dir}")
        meta = self._read_meta(vm_dir)
        info = VMInfo(instance_id=instance_id, state="exited", vm_dir=vm_dir,
                      console_path=vm_dir / "console.log", host_port=meta.get("host_port"),
                      accel=meta.get("accel"), started_at=meta.get("started_at"))
        pid = self._live_pid(vm_dir, meta)
        if pid:
            info.state, info.pid = "running", pid
            return info
        kind, value = exit_status_from_console(info.console_path)
        if kind == "exit status":
            info.exit_code = value
        elif kind == "killed by signal":
            info.signal = value
        return info

    def list(self) -> list[VMInfo]:
        if not self.vms_dir.is_dir():
            return []
        return [self.status(d.name) for d in sorted(self.vms_dir.iterdir())
                if d.is_dir() and _INSTANCE_ID.match(d.name)]

    def adopt(self) -> list[VMInfo]:
        """After an agent restart: the VMs of this host that are still running."""
        running = []
        for info in self.list():
            if not info.running:
                continue
            try:
                state = qmp_command(info.vm_dir / "qmp.sock", "query-status", timeout=3)
                log.info("%s: adopted QEMU pid %d (%s)", info.instance_id, info.pid, state.get("status"))
            except QMPError as exc:
                log.warning("%s: QEMU pid %d is alive but its monitor does not answer: %s",
                            info.instance_id, info.pid, exc)
            running.append(info)
        return running

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _read_meta(vm_dir: Path) -> dict:
        try:
            return json.loads((vm_dir / "vm.json").read_text())
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _read_pid(vm_dir: Path) -> int | None:
        try:
            return int((vm_dir / "qemu.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _live_pid(self, vm_dir: Path, meta: dict | None = None) -> int | None:
        """The QEMU pid if that process is alive and really is this VM's QEMU (not a reused pid)."""
        meta = self._read_meta(vm_dir) if meta is None else meta
        pid = meta.get("pid") or self._read_pid(vm_dir)
        if not pid:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return None
        if str(vm_dir / "qmp.sock").encode() not in cmdline:
            return None
        return pid


def exit_status_from_console(console: Path) -> tuple[str | None, int | None]:
    """The last init status line of a console log: ("exit status", N), ("killed by signal", S)
    or (None, None) if the VM ended without init reporting (crash, host kill)."""
    try:
        with open(console, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _CONSOLE_TAIL))
            tail = f.read()
    except OSError:
        return None, None
    matches = _STATUS_LINE.findall(tail)
    if not matches:
        return None, None
    kind, value = matches[-1]
    return kind.decode(), int(value)


def vm_info_dict(info: VMInfo) -> dict:
    """JSON-friendly form of a VMInfo (for Celery results and the CLI)."""
    d = asdict(info)
    d["vm_dir"], d["console_path"] = str(info.vm_dir), str(info.console_path)
    return d
