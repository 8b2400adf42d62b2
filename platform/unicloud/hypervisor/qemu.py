"""The QEMU command line for one unicloud microvm.

`-M microvm,acpi=off` with virtio-mmio devices is the smallest machine that boots our kernel
reliably under TCG (FACTS.md; `rtc=off,pic=off` hangs). There is no ACPI, so the guest cannot be
asked to power down through QMP; instead a second UART (ttyS1, wired to a unix socket) is the
control channel init reads signal requests from, and init ends the VM with a reboot, which
`-no-reboot` turns into a QEMU exit.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from unicloud.hypervisor.accel import QEMU, Accel

GUEST_IP = "10.0.2.15"
GUEST_GATEWAY = "10.0.2.2"
GUEST_NETMASK = "255.255.255.0"
GUEST_PORT = 8080


def kernel_cmdline(*, quiet: bool = True, extra: str = "") -> str:
    """Console on the first UART, static IPv4 via the kernel's IP autoconfig, and any panic or
    reboot ends QEMU at once (`reboot=t` triple-faults, which -no-reboot turns into an exit)."""
    parts = [
        "console=ttyS0",
        f"ip={GUEST_IP}::{GUEST_GATEWAY}:{GUEST_NETMASK}::eth0:off",
        "reboot=t",
        "panic=-1",
        "rdinit=/init",
    ]
    if quiet:
        parts.append("quiet")
    if extra:
        parts.append(extra)
    return " ".join(parts)


@dataclass
class QemuSpec:
    """Everything that varies between VMs; the rest of the command line is fixed."""

    kernel: Path
    initrd: Path
    host_port: int
    console_log: Path
    qmp_socket: Path
    control_socket: Path
    pidfile: Path
    accel: Accel
    memory_mb: int = 128
    host_addr: str = "127.0.0.1"
    guest_port: int = GUEST_PORT
    run_as: str | None = None  # drop to this user once QEMU is set up
    restrict_network: bool = False  # slirp restrict=on: no guest egress at all
    daemonize: bool = True
    quiet: bool = True
    extra_cmdline: str = ""
    extra_args: list[str] = field(default_factory=list)


@functools.cache
def _supports_run_with() -> bool:
    """QEMU >= 9 spells -runas as -run-with user=."""
    out = subprocess.run([QEMU, "-help"], capture_output=True, text=True, check=False).stdout
    return "-run-with" in out


def build_argv(spec: QemuSpec) -> list[str]:
    if not 16 <= spec.memory_mb <= 65536:
        raise ValueError(f"memory_mb must be between 16 and 65536, got {spec.memory_mb}")
    if not 1 <= spec.host_port <= 65535:
        raise ValueError(f"host_port must be a TCP port, got {spec.host_port}")
    netdev = f"user,id=n0,hostfwd=tcp:{spec.host_addr}:{spec.host_port}-:{spec.guest_port}"
    if spec.restrict_network:
        netdev += ",restrict=on"
    argv = [
        QEMU,
        "-M", "microvm,acpi=off",
        *spec.accel.qemu_args(),
        "-smp", "1",
        "-m", str(spec.memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(spec.kernel),
        "-initrd", str(spec.initrd),
        "-append", kernel_cmdline(quiet=spec.quiet, extra=spec.extra_cmdline),
        # ttyS0: the console, appended to a file the agent tails.
        "-chardev", f"file,id=console,path={spec.console_log}",
        "-serial", "chardev:console",
        # ttyS1: the control channel init reads "TERM"/"KILL"/... lines from.
        "-chardev", f"socket,id=control,path={spec.control_socket},server=on,wait=off",
        "-device", "isa-serial,chardev=control,index=1",
        "-device", "virtio-rng-device",
        "-netdev", netdev,
        "-device", "virtio-net-device,netdev=n0",
        "-qmp", f"unix:{spec.qmp_socket},server=on,wait=off",
        "-pidfile", str(spec.pidfile),
    ]
    if spec.daemonize:
        argv.append("-daemonize")
    if spec.run_as:
        argv += ["-run-with", f"user={spec.run_as}"] if _supports_run_with() else ["-runas", spec.run_as]
    return argv + list(spec.extra_args)
