"""Pick the QEMU accelerator: KVM only when it demonstrably runs guest code, else TCG.

On nested or paravirtualised hosts `/dev/kvm` can exist and accept `KVM_CREATE_VM` while
ordinary guests abort or stall (FACTS.md), so opening the device proves nothing. The probe boots
a 64 KiB firmware image whose reset vector writes to QEMU's `isa-debug-exit` port; QEMU then
exits with status 3. Anything else - an abort, an error, or no exit within the timeout - means
TCG. The probe is killed on timeout, so it can never hang the caller.
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


def probe_accelerator(timeout: float = 3.0) -> Accel:
    """Return the accelerator to use; cached for the life of the process.

    `UNICLOUD_ACCEL=tcg|kvm` skips the probe."""
    global _cache
    with _lock:
        if _cache is None:
            _cache = _decide(timeout)
            if _cache.name == "tcg":
                log.warning("VMs will run under TCG (software emulation, slower): %s", _cache.reason)
            else:
                log.info("VMs will run under KVM: %s", _cache.reason)
        return _cache


def _decide(timeout: float) -> Accel:
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
    return run_kvm_probe(timeout)


def run_kvm_probe(timeout: float) -> Accel:
    """Boot the reset-vector payload under KVM with a hard timeout."""
    with tempfile.TemporaryDirectory(prefix="unicloud-kvm-probe-") as tmp:
        firmware = Path(tmp) / "probe.bin"
        image = bytearray(b"\xF4" * 0x10000)  # hlt everywhere
        image[0xFFF0:0xFFF0 + len(_RESET_CODE)] = _RESET_CODE
        firmware.write_bytes(bytes(image))
        argv = [QEMU, "-M", "pc", "-accel", "kvm", "-cpu", "host", "-m", "16",
                "-nodefaults", "-no-user-config", "-display", "none", "-bios", str(firmware),
                "-device", f"isa-debug-exit,iobase={_EXIT_PORT:#x},iosize=1"]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return Accel("tcg", f"cannot run {QEMU}: {exc}")
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Accel("tcg", f"KVM probe guest did not finish within {timeout:g}s")
    if proc.returncode == _PROBE_OK:
        return Accel("kvm", "KVM probe guest ran")
    detail = out.decode(errors="replace").strip().splitlines()
    return Accel("tcg", f"KVM probe failed (exit {proc.returncode}): {detail[-1] if detail else 'no output'}")
