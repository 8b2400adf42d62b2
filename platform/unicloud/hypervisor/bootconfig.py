"""The boot-config cpio the agent appends to an image's rootfs (docs/architecture.md, "boot contract").

Config changes (`config:set`, a new `PORT`) must not need a new image, so per-instance settings
travel as a last, uncompressed cpio after the image's `rootfs.cpio.xz` layers: the kernel unpacks
concatenated archives in order and later files win.
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from unicloud.image import cpio

GUEST_DNS = "10.0.2.3"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


class BootConfigError(ValueError):
    """The environment or command cannot be handed to the guest's init."""


def encode_env(env: Mapping[str, str]) -> bytes:
    """NUL-separated KEY=VALUE, sorted so the same config gives the same bytes."""
    out = []
    for key in sorted(env):
        value = env[key]
        if not isinstance(value, str):
            raise BootConfigError(f"config var {key}: value must be a string, got {type(value).__name__}")
        if not _NAME.match(key):
            raise BootConfigError(f"config var name {key!r} is not a valid environment variable name")
        if "\0" in value:
            raise BootConfigError(f"config var {key}: value contains a NUL byte")
        out.append(f"{key}={value}".encode() + b"\0")
    return b"".join(out)


def build_boot_config(env: Mapping[str, str], cmd: str, *, hostname: str = "unicloud",
                      workdir: str | None = None, nameserver: str = GUEST_DNS) -> bytes:
    """Return the boot-config cpio (newc, uncompressed, deterministic)."""
    cmd = cmd.strip()
    if not cmd:
        raise BootConfigError("empty command: nothing for the VM to run")
    if "\n" in cmd or "\r" in cmd or "\0" in cmd:
        raise BootConfigError("the command must be a single line without NUL bytes")
    if not _HOSTNAME.match(hostname):
        raise BootConfigError(f"invalid hostname {hostname!r}")
    entries = [
        cpio.directory("etc"),
        cpio.directory("etc/unicloud"),
        cpio.regular("etc/unicloud/env", encode_env(env), 0o600),
        cpio.regular("etc/unicloud/cmd", cmd.encode() + b"\n", 0o600),
        cpio.regular("etc/hostname", hostname.encode() + b"\n"),
        cpio.regular("etc/resolv.conf", f"nameserver {nameserver}\n".encode()),
    ]
    if workdir is not None:
        if not workdir.startswith("/") or "\n" in workdir:
            raise BootConfigError(f"workdir must be an absolute path, got {workdir!r}")
        entries.append(cpio.regular("etc/unicloud/workdir", workdir.encode() + b"\n"))
    buf = io.BytesIO()
    cpio.write_newc(buf, entries)
    return buf.getvalue()


def assemble_initrd(rootfs: Path, bootcfg_cpio: bytes, dest: Path) -> Path:
    """Write `rootfs` followed by the boot config to `dest`.

    The kernel only recognises an uncompressed archive at a 4-byte aligned offset (NUL bytes
    between archives are skipped), so the rootfs is padded with zeros first."""
    tmp = dest.with_name(dest.name + ".tmp")
    with open(rootfs, "rb") as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
        out.write(b"\0" * (-out.tell() % 4))
        out.write(bootcfg_cpio)
    tmp.replace(dest)
    return dest
