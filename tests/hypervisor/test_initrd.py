"""The host boots an image from its rootfs decompressed once and cached."""

from __future__ import annotations

import io

import pytest

import unicloud.hypervisor.initrd as initrd_mod
from unicloud.hypervisor.bootconfig import build_boot_config
from unicloud.hypervisor.initrd import assemble, unpacked_cache, unpacked_rootfs
from unicloud.image import cpio
from unicloud.image.compression import compress_layer


def archive(*files: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    cpio.write_newc(buf, [cpio.regular(name, data) for name, data in files])
    return buf.getvalue()


@pytest.fixture
def layered_rootfs(tmp_path):
    system, app = archive(("init", b"\x7fELF" * 100)), archive(("app/app.py", b"print(1)\n"))
    path = tmp_path / "rootfs.cpio.xz"
    path.write_bytes(compress_layer(system) + compress_layer(app))
    return path, system + app


def test_the_rootfs_is_decompressed_once_per_host(layered_rootfs, tmp_path, monkeypatch):
    path, raw = layered_rootfs
    cache = unpacked_cache(tmp_path / "cache")
    calls = []
    real = initrd_mod.read_rootfs_bytes
    monkeypatch.setattr(initrd_mod, "read_rootfs_bytes", lambda p: calls.append(p) or real(p))
    first = unpacked_rootfs(path, cache)
    second = unpacked_rootfs(path, cache)
    assert first == second and first.read_bytes() == raw and len(calls) == 1


def test_the_initrd_is_the_unpacked_rootfs_then_the_boot_config(layered_rootfs, tmp_path):
    path, raw = layered_rootfs
    cfg = build_boot_config({"PORT": "8080"}, "web")
    out = assemble(path, cfg, tmp_path / "initrd", cache=unpacked_cache(tmp_path / "cache"))
    data = out.read_bytes()
    assert len(raw) % 4 == 0 and data == raw + cfg
    names = [e.path for e in cpio.read_newc(data)]
    assert names[:2] == ["init", "app/app.py"] and "etc/unicloud/cmd" in names


def test_a_rootfs_that_is_not_xz_is_used_as_it_is(tmp_path):
    plain = tmp_path / "rootfs.cpio"
    plain.write_bytes(archive(("init", b"x")))
    assert unpacked_rootfs(plain, unpacked_cache(tmp_path / "cache")) == plain


def test_a_rootfs_larger_than_the_cache_boots_compressed(layered_rootfs, tmp_path):
    path, _ = layered_rootfs
    tiny = unpacked_cache(tmp_path / "cache")
    tiny.budget = 10
    assert unpacked_rootfs(path, tiny) == path
