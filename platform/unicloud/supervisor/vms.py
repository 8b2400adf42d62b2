"""Stop every VM this data dir started, from their pidfiles: QEMU runs in its own session so
that agent restarts can adopt it, which also means nobody else will stop it on shutdown."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _is_qemu(pid: int) -> bool:
    try:
        return "qemu" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return False


def running_vm_pids(vms_dir: Path) -> list[int]:
    pids = []
    if not vms_dir.exists():
        return pids
    for pidfile in vms_dir.rglob("qemu.pid"):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        if _is_qemu(pid):
            pids.append(pid)
    return pids


def stop_all_vms(vms_dir: Path, timeout: float = 10.0) -> int:
    pids = running_vm_pids(vms_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_is_qemu(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _is_qemu(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return len(pids)
