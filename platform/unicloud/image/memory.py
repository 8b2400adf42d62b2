"""The least guest memory an image can boot in.

The initramfs lives in RAM twice while the kernel unpacks it (the compressed initrd and the
unpacked tmpfs), and the app needs room after that. Booting a 63 MB Django rootfs in 128 MB ends
in "Initramfs unpacking failed: write error", so the scheduler never goes below this figure.
While a layer is unpacked the kernel's xz decoder also holds that layer's LZMA2 dictionary.
"""

from __future__ import annotations

import math

from unicloud.image.compression import dict_size

MIB = 1024 * 1024
KERNEL_AND_APP_HEADROOM_MB = 80  # kernel, page cache and the app's own start-up
STEP_MB = 64


def minimum_memory_mb(manifest: dict | None) -> int:
    rootfs = (manifest or {}).get("rootfs") or {}
    unpacked = rootfs.get("uncompressed_size") or 0
    packed = rootfs.get("size") or 0
    if not unpacked:
        return 0
    layers = rootfs.get("layers") or [{"uncompressed_size": unpacked}]
    decoder = max(dict_size(layer.get("uncompressed_size") or 0) for layer in layers)
    need = (unpacked + packed + decoder) / MIB + KERNEL_AND_APP_HEADROOM_MB
    return int(math.ceil(need / STEP_MB) * STEP_MB)


def instance_memory_mb(requested_mb: int, manifest: dict | None) -> int:
    return max(requested_mb, minimum_memory_mb(manifest))
