"""How a rootfs layer is compressed, and how any stored rootfs is read back.

xz with the x86 BCJ filter in front of LZMA2 (preset 9e) is the smallest format the kernel's
initramfs unpacker reads: the python-hello rootfs is 4.38 MB against 4.91 MB with zstd -19
(BCJ turns relative x86 call targets into absolute ones, so repeated calls compress; the
interpreter and libc are 60% of the bytes). The guest never decodes it, though: xz is slow to
decode (0.27 s natively, 0.85 s more boot time than zstd under TCG), so hosts boot from the
rootfs decompressed once (hypervisor/initrd.py); xz is what is stored and moved. liblzma is
deterministic for a given version and settings, so the same layer always compresses to the same
bytes.

Each layer is its own xz stream; concatenated streams are still one valid .xz file and the
kernel unpacks them one after the other (each holds a complete cpio archive with a trailer).
"""

from __future__ import annotations

import functools
import hashlib
import lzma
from pathlib import Path

SUFFIX = "xz"
CHECK = lzma.CHECK_CRC32  # the kernel's xz decoder verifies CRC32 (it has no CRC64/SHA-256)
PRESET = 9 | lzma.PRESET_EXTREME
# The kernel allocates the whole LZMA2 dictionary while it unpacks the initramfs, so it is
# capped: 16 MiB costs flask 0.05% against 64 MiB, and is 48 MiB less guest RAM at boot.
MAX_DICT = 16 << 20
MIN_DICT = 1 << 20
XZ_MAGIC = b"\xfd7zXZ\x00"
DESCRIPTION = "xz (x86 BCJ + LZMA2 preset 9e, CRC32)"


class CompressionError(RuntimeError):
    """A stored rootfs is not in a format this version reads."""


def dict_size(raw_size: int) -> int:
    """The smallest power of two holding the whole layer, within [MIN_DICT, MAX_DICT]: a larger
    dictionary compresses no better and only costs the guest memory at boot."""
    size = MIN_DICT
    while size < raw_size and size < MAX_DICT:
        size <<= 1
    return size


@functools.lru_cache(maxsize=1)
def encoder_fingerprint() -> str:
    """Identifies everything besides the input that determines the compressed bytes: the
    settings, and the encoder itself (a liblzma upgrade may emit other bytes), by a known-answer
    compression of a fixed sample."""
    sample = b"".join(b"%d unicloud layer %x\n" % (i, i * i) for i in range(4096))
    out = compress_layer(sample)
    return hashlib.sha256(f"{DESCRIPTION} max-dict={MAX_DICT}".encode() + out).hexdigest()[:32]


def compress_layer(raw: bytes) -> bytes:
    filters = [{"id": lzma.FILTER_X86},
               {"id": lzma.FILTER_LZMA2, "preset": PRESET, "dict_size": dict_size(len(raw))}]
    return lzma.compress(raw, format=lzma.FORMAT_XZ, check=CHECK, filters=filters)


def decompress(data: bytes, *, name: str = "rootfs") -> bytes:
    """The concatenated cpio archives of a rootfs file (all of its xz streams)."""
    if not data.startswith(XZ_MAGIC):
        raise CompressionError(f"{name} is not an xz file (images of format 1 used zstd: "
                               f"rebuild them with a new push)")
    try:
        return lzma.decompress(data, format=lzma.FORMAT_XZ)
    except lzma.LZMAError as exc:
        raise CompressionError(f"{name} is corrupt: {exc}") from exc


def read_rootfs_bytes(path: Path) -> bytes:
    return decompress(Path(path).read_bytes(), name=str(path))
