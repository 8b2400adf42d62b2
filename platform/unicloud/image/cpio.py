"""Deterministic "newc" cpio archives: the format the Linux kernel unpacks as an initramfs.

Written by hand because the `cpio` tool takes metadata from the disk (mtimes, inode numbers,
owners), which would make images differ between builds of the same input. Here every field
comes from the caller, inode numbers are assigned in order, and entries are sorted by path.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


class CpioError(ValueError):
    """An archive is malformed or an entry cannot be represented."""


@dataclass(frozen=True)
class CpioEntry:
    """One archive member. `path` is relative ("etc/passwd"); `data` is the file content or,
    for a symlink, the link target."""

    path: str
    mode: int  # full st_mode, including the file-type bits
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


def directory(path: str, perm: int = 0o755, **kw) -> CpioEntry:
    return CpioEntry(path, stat.S_IFDIR | perm, **kw)


def regular(path: str, data: bytes, perm: int = 0o644, **kw) -> CpioEntry:
    return CpioEntry(path, stat.S_IFREG | perm, data, **kw)


def symlink(path: str, target: str, **kw) -> CpioEntry:
    return CpioEntry(path, stat.S_IFLNK | 0o777, target.encode(), **kw)


def char_device(path: str, major: int, minor: int, perm: int = 0o600, **kw) -> CpioEntry:
    return CpioEntry(path, stat.S_IFCHR | perm, rdevmajor=major, rdevminor=minor, **kw)


def _normalise(path: str) -> str:
    path = path.strip("/")
    if not path or path.startswith("../") or "/../" in f"/{path}/":
        raise CpioError(f"invalid archive path: {path!r}")
    return path


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, e: CpioEntry, name: bytes, size: int) -> bytes:
    fields = (ino, e.mode, e.uid, e.gid, 2 if e.is_dir else 1, e.mtime, size,
              0, 0, e.rdevmajor, e.rdevminor, len(name) + 1, 0)
    for f in fields:
        if not 0 <= f <= 0xFFFFFFFF:
            raise CpioError(f"{e.path}: header field {f} out of range")
    return MAGIC + b"".join(b"%08X" % f for f in fields)


def write_newc(out: BinaryIO, entries: Iterable[CpioEntry], *, sort: bool = True,
               trailer: bool = True) -> int:
    """Write `entries` as a newc archive to `out`; return the number of bytes written.

    Paths must be unique. With `sort`, members are ordered by path so parents precede children
    and the byte stream depends only on the entries, not on the order they were produced in."""
    items = [CpioEntry(**{**e.__dict__, "path": _normalise(e.path)}) for e in entries]
    seen: set[str] = set()
    for e in items:
        if e.path in seen:
            raise CpioError(f"duplicate archive path: {e.path}")
        seen.add(e.path)
    if sort:
        items.sort(key=lambda e: e.path.encode())
    written = 0
    for ino, e in enumerate(items, start=1):
        written += _write_one(out, ino, e)
    if trailer:
        written += _write_one(out, 0, CpioEntry(TRAILER, 0))
    return written


def _write_one(out: BinaryIO, ino: int, e: CpioEntry) -> int:
    name = e.path.encode()
    payload = e.data if (e.is_file or e.is_symlink) else b""
    if payload and not (e.is_file or e.is_symlink):
        raise CpioError(f"{e.path}: only files and symlinks carry data")
    head = _header(ino, e, name, len(payload)) + name + b"\0"
    chunk = head + _pad4(len(head)) + payload + _pad4(len(payload))
    out.write(chunk)
    return len(chunk)


def iter_newc(data: bytes) -> Iterator[CpioEntry]:
    """Parse a newc archive (possibly several concatenated, as in an initrd), without the
    trailers. Later duplicates are yielded too; callers decide who wins."""
    pos = 0
    while pos < len(data):
        if data[pos:pos + 6] != MAGIC:
            if data[pos:].strip(b"\0"):
                raise CpioError(f"bad cpio magic at offset {pos}")
            return
        try:
            f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        except ValueError as exc:
            raise CpioError(f"bad cpio header at offset {pos}") from exc
        _ino, mode, uid, gid, _nlink, mtime, size, _, _, rmaj, rmin, namesize, _ = f
        name_start = pos + 110
        name = data[name_start:name_start + namesize - 1].decode()
        data_start = name_start + namesize
        data_start += -data_start % 4
        payload = data[data_start:data_start + size]
        if len(payload) != size:
            raise CpioError(f"truncated cpio member {name!r}")
        pos = data_start + size
        pos += -pos % 4
        if name == TRAILER:
            continue
        yield CpioEntry(name, mode, payload, uid, gid, mtime, rmaj, rmin)


def read_newc(data: bytes) -> list[CpioEntry]:
    return list(iter_newc(data))
