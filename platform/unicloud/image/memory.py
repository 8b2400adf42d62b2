"""The least guest memory an image can boot in.

Hosts boot an image from its rootfs decompressed (hypervisor/initrd.py), so while the kernel
unpacks the initramfs the archives live in RAM twice: the initrd QEMU loaded and the tmpfs being
filled (the initrd is freed afterwards). The app needs room after that. Booting a 63 MB Django
rootfs in 128 MB ends in "Initramfs unpacking failed: write error", so the scheduler never goes
below this figure.
"""

from __future__ import annotations

import math

MIB = 1024 * 1024
KERNEL_AND_APP_HEADROOM_MB = 80  # kernel, page cache and the app's own start-up
STEP_MB = 64


def minimum_memory_mb(manifest: dict | None) -> int:
    rootfs = (manifest or {}).get("rootfs") or {}
    unpacked = rootfs.get("uncompressed_size") or 0
    if not unpacked:
        return 0
    need = 2 * unpacked / MIB + KERNEL_AND_APP_HEADROOM_MB
    return int(math.ceil(need / STEP_MB) * STEP_MB)


def instance_memory_mb(requested_mb: int, manifest: dict | None) -> int:
    return max(requested_mb, minimum_memory_mb(manifest))
