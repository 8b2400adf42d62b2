"""The header of the report: what machine, when, which commit, which accelerator."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Machine:
    cores: int
    memory_gib: float
    cpu_model: str
    accelerator: str
    kernel: str
    date: str
    commit: str
    load: str


def _meminfo_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head + (" (with uncommitted changes)" if dirty else "")


def accelerator() -> str:
    """The product's own KVM/TCG decision, so the baselines run under the same accelerator."""
    from unicloud.hypervisor.accel import probe_accelerator

    acc = probe_accelerator()
    return f"{acc.name.upper()} ({acc.reason})"


def accel_args() -> list[str]:
    from unicloud.hypervisor.accel import probe_accelerator

    return probe_accelerator().qemu_args()


def describe() -> Machine:
    try:
        acc = accelerator()
    except Exception as e:  # the header must still be written
        acc = f"unknown ({type(e).__name__}: {e})"
    return Machine(
        cores=os.cpu_count() or 0,
        memory_gib=_meminfo_gib(),
        cpu_model=_cpu_model(),
        accelerator=acc,
        kernel=platform.release(),
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        commit=_commit(),
        load=" ".join(f"{x:.2f}" for x in os.getloadavg()),
    )
