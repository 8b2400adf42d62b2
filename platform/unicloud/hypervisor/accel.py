"""Pick the QEMU accelerator: KVM only when it demonstrably boots a Linux guest, else TCG.

On nested or paravirtualised hosts `/dev/kvm` can exist and accept `KVM_CREATE_VM` while
ordinary guests abort or stall (FACTS.md), so opening the device proves nothing. Even real-mode
code runs on such hosts (measured: a reset-vector payload exits fine) while a Linux kernel then
stalls before printing a line. So the probe has two stages, each under a hard timeout and killed
on expiry, so it never hangs the caller:

1. a 64 KiB firmware whose reset vector writes to QEMU's `isa-debug-exit` port (fast reject of
   hosts where QEMU cannot even start a KVM vCPU);
2. the guest kernel itself on the microvm machine, without an initrd: it must print its banner
   and panic ("No working init found"), and `panic=-1` + `-no-reboot` make QEMU exit.

Without a kernel to try, KVM cannot be trusted and TCG is chosen.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
_EXIT_PORT = 0xF4
# Real mode at the reset vector: mov al,1 ; out 0xf4,al ; hlt ; jmp $  -> QEMU exits with (1<<1)|1.
_RESET_CODE = bytes([0xB0, 0x01, 0xE6, _EXIT_PORT, 0xF4, 0xEB, 0xFE])
_PROBE_OK = 3


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" | "tcg"
    reason: str

    def qemu_args(self) -> list[str]:
        """Accelerator and CPU flags. TCG uses `-cpu max` for RDRAND, so early
        /dev/urandom reads in the guest do not wait for entropy."""
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        return ["-accel", "tcg", "-cpu", "max"]


_cache: Accel | None = None
_lock = threading.Lock()


def probe_accelerator(timeout: float = 3.0, *, kernel: Path | None = None) -> Accel:
    """Return the accelerator to use; cached for the life of the process.

    `kernel` is the bzImage to test-boot (default: any kernel already in the cache).
    `UNICLOUD_ACCEL=tcg|kvm` skips the probe."""
    global _cache
    with _lock:
        if _cache is None:
            _cache = _decide(timeout, kernel)
            if _cache.name == "tcg":
                log.warning("VMs will run under TCG (software emulation, slower): %s", _cache.reason)
            else:
                log.info("VMs will run under KVM: %s", _cache.reason)
        return _cache


def _decide(timeout: float, kernel: Path | None) -> Accel:
    forced = os.environ.get("UNICLOUD_ACCEL", "").strip().lower()
    if forced:
        if forced not in ("kvm", "tcg"):
            raise ValueError(f"UNICLOUD_ACCEL must be 'kvm' or 'tcg', not {forced!r}")
        return Accel(forced, "forced by UNICLOUD_ACCEL")
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
    except OSError as exc:
        return Accel("tcg", f"/dev/kvm is not usable: {exc.strerror}")
    first = run_kvm_probe(timeout)
    if first.name != "kvm":
        return first
    kernel = kernel or _any_cached_kernel()
    if kernel is None:
        return Accel("tcg", "KVM runs real-mode code, but no guest kernel is at hand to verify it boots Linux")
    return run_kvm_kernel_probe(kernel, timeout)


def _any_cached_kernel() -> Path | None:
    from unicloud.config import Settings

    found = sorted((Settings.from_env().cache_dir / "kernels").glob("*/bzImage"))
    return found[0] if found else None


def _run_with_timeout(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """(exit code or None on timeout, output); the process group is killed on timeout."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return -1, f"cannot run {argv[0]}: {exc}"
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out.decode(errors="replace")
    return proc.returncode, out.decode(errors="replace")


def run_kvm_kernel_probe(kernel: Path, timeout: float) -> Accel:
    """Boot `kernel` under KVM without an initrd; success = banner printed and QEMU exited."""
    argv = [QEMU, "-M", "microvm,acpi=off", "-accel", "kvm", "-cpu", "host", "-m", "64",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", "stdio", "-kernel", str(kernel),
            "-append", "console=ttyS0 panic=-1 reboot=t loglevel=4"]
    code, out = _run_with_timeout(argv, timeout)
    if code is None:
        return Accel("tcg", f"a Linux guest under KVM did not finish booting within {timeout:g}s")
    if code == 0 and "Kernel panic" in out:
        return Accel("kvm", "a Linux guest booted under KVM")
    lines = out.strip().splitlines()
    return Accel("tcg", f"a Linux guest failed under KVM (exit {code}): {lines[-1] if lines else 'no output'}")


def run_kvm_probe(timeout: float) -> Accel:
    """Stage 1: run the reset-vector payload under KVM."""
    with tempfile.TemporaryDirectory(prefix="unicloud-kvm-probe-") as tmp:
        firmware = Path(tmp) / "probe.bin"
        image = bytearray(b"\xF4" * 0x10000)  # hlt everywhere
        image[0xFFF0:0xFFF0 + len(_RESET_CODE)] = _RESET_CODE
        firmware.write_bytes(bytes(image))
        argv = [QEMU, "-M", "pc", "-accel", "kvm", "-cpu", "host", "-m", "16",
                "-nodefaults", "-no-user-config", "-display", "none", "-bios", str(firmware),
                "-device", f"isa-debug-exit,iobase={_EXIT_PORT:#x},iosize=1"]
        code, out = _run_with_timeout(argv, timeout)
    if code is None:
        return Accel("tcg", f"KVM probe firmware did not finish within {timeout:g}s")
    if code == _PROBE_OK:
        return Accel("kvm", "KVM runs real-mode code")
    lines = out.strip().splitlines()
    return Accel("tcg", f"KVM probe failed (exit {code}): {lines[-1] if lines else 'no output'}")
