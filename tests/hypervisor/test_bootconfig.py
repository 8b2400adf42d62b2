"""Boot-config cpio and initrd assembly (pure Python, no VM)."""

from __future__ import annotations

import pytest

from unicloud.hypervisor.bootconfig import BootConfigError, assemble_initrd, build_boot_config, encode_env
from unicloud.image.cpio import read_newc


def test_boot_config_contents_and_determinism():
    data = build_boot_config({"PORT": "8080", "DATABASE_URL": "postgres://x=y"}, "web --flag\n",
                             hostname="web-1")
    assert data == build_boot_config({"DATABASE_URL": "postgres://x=y", "PORT": "8080"}, "web --flag",
                                     hostname="web-1")
    files = {e.path: e for e in read_newc(data)}
    assert files["etc/unicloud/env"].data == b"DATABASE_URL=postgres://x=y\0PORT=8080\0"
    assert files["etc/unicloud/cmd"].data == b"web --flag\n"
    assert files["etc/hostname"].data == b"web-1\n"
    assert files["etc/resolv.conf"].data == b"nameserver 10.0.2.3\n"
    assert {e.mtime for e in files.values()} == {0}
    assert files["etc/unicloud/env"].mode & 0o777 == 0o600


@pytest.mark.parametrize("env, cmd, message", [
    ({"BAD-NAME": "x"}, "web", "not a valid environment variable name"),
    ({"X": "a\0b"}, "web", "NUL"),
    ({}, "   ", "empty command"),
    ({}, "web\nrm -rf /", "single line"),
])
def test_rejects_bad_input(env, cmd, message):
    with pytest.raises(BootConfigError, match=message):
        build_boot_config(env, cmd)


def test_encode_env_rejects_non_strings():
    with pytest.raises(BootConfigError, match="must be a string"):
        encode_env({"PORT": 8080})


def test_initrd_pads_rootfs_to_four_bytes(tmp_path):
    rootfs = tmp_path / "rootfs.cpio.xz"
    rootfs.write_bytes(b"\xfd7zXZ\x00123")  # 9 bytes: boot config must start at 12
    cfg = build_boot_config({}, "web")
    out = assemble_initrd(rootfs, cfg, tmp_path / "initrd").read_bytes()
    assert out[:9] == rootfs.read_bytes()
    assert out[9:12] == b"\0\0\0"
    assert out[12:] == cfg
