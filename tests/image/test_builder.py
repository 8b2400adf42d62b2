"""Images from a small real root: contents, policy, reproducibility, manifest."""

from __future__ import annotations

import json
import stat
import subprocess

import pytest

from unicloud.image.builder import ImageBuildError, build_image
from unicloud.image.compression import read_rootfs_bytes
from unicloud.image.cpio import read_newc
from unicloud.image.layers import RUNTIME_LAYER_MTIME
from unicloud.image.store import ImageStore, manifest_digest


def unpack(path) -> dict:
    """Every layer's entries; a later layer's entry wins, as when the kernel unpacks them."""
    return {"/" + e.path: e for e in read_newc(read_rootfs_bytes(path))}


def build(root, manifest, store_dir, kernel, init, **kw):
    return build_image(root, manifest, store=ImageStore(store_dir), kernel=kernel, init=init,
                       log=lambda m: None, **kw)


def test_rootfs_layout(static_root, test_kernel, init_binary, tmp_path):
    root, manifest = static_root
    rec = build(root, manifest, tmp_path / "s", test_kernel, init_binary)
    files = unpack(rec.path / "rootfs.cpio.xz")
    assert files["/init"].data == init_binary.read_bytes()
    assert files["/app/bin/web"].mode & 0o777 == 0o755
    assert b"app:x:1000:1000:app:/app:/nonexistent" in files["/etc/passwd"].data
    assert files["/etc/unicloud/image-env"].data == b"GREETING=hi there\0PATH=/app/bin\0"
    assert files["/etc/unicloud/workdir"].data == b"/app\n"
    for dev, (major, minor) in {"/dev/console": (5, 1), "/dev/null": (1, 3),
                                "/dev/urandom": (1, 9)}.items():
        assert stat.S_ISCHR(files[dev].mode) and (files[dev].rdevmajor,
                                                  files[dev].rdevminor) == (major, minor)
    for d in ("/proc", "/sys", "/dev", "/tmp"):
        assert stat.S_ISDIR(files[d].mode)
    assert not any(p.startswith(("/app/.git", "/app/.unicloud/cache")) for p in files)
    assert "/app/.unicloud/runtime.json" in files
    for e in files.values():
        assert (e.uid, e.gid) == (0, 0)
        assert e.mtime == (0 if e.path == "app" or e.path.startswith("app/") else RUNTIME_LAYER_MTIME)
        assert not e.mode & (stat.S_ISUID | stat.S_ISGID)
        if not e.is_symlink and not stat.S_ISCHR(e.mode) and not e.path.startswith("tmp"):
            assert not e.mode & 0o022, e.path
    m = rec.manifest
    assert m["audit"]["passed"] is True
    assert m["rootfs"]["files"] == sum(1 for e in files.values() if not e.is_dir)
    assert m["total_size"] == m["kernel"]["size"] + m["rootfs"]["size"]
    assert m["digest"] == rec.digest == manifest_digest(m)
    assert json.loads((rec.path / "manifest.json").read_text()) == m


def test_same_input_builds_bit_identical_image(static_root, test_kernel, init_binary,
                                               tmp_path):
    root, manifest = static_root
    # separate, empty caches: both builds parse, compile and compress everything themselves
    a = build(root, manifest, tmp_path / "a", test_kernel, init_binary,
              cache_dir=tmp_path / "cache-a")
    # touch every file: mtimes on disk must not leak into the image
    subprocess.run(["touch", "-d", "2030-01-01", *map(str, root.rglob("*"))], check=True)
    b = build(root, manifest, tmp_path / "b", test_kernel, init_binary,
              cache_dir=tmp_path / "cache-b")
    assert a.digest == b.digest
    for name in ("rootfs.cpio.xz", "manifest.json", "sbom.cdx.json"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes()
    c = build(root, manifest, tmp_path / "c", test_kernel, init_binary,
              source_date_epoch=1700000000)
    assert c.digest != a.digest
    # the app's files carry the commit time; the runtime layer a fixed one, so that it is the
    # same layer from one commit to the next
    assert [layer["name"] for layer in c.manifest["rootfs"]["layers"]] == \
        ["system", "runtime", "app"]
    mtimes = {p: e.mtime for p, e in unpack(c.path / "rootfs.cpio.xz").items()}
    in_app = {p for p in mtimes if p == "/app" or p.startswith("/app/")}
    assert in_app and {mtimes[p] for p in in_app} == {1700000000}
    assert {m for p, m in mtimes.items() if p not in in_app} == {RUNTIME_LAYER_MTIME}


def test_bad_manifest_is_rejected_clearly(static_root, test_kernel, init_binary, tmp_path):
    root, manifest = static_root
    with pytest.raises(ImageBuildError, match="'runtime' must be one of"):
        build(root, {**manifest, "runtime": "cobol"}, tmp_path / "s", test_kernel, init_binary)
    with pytest.raises(ImageBuildError, match="process_types"):
        build(root, {**manifest, "process_types": {}}, tmp_path / "s", test_kernel, init_binary)
    with pytest.raises(ImageBuildError, match="/app/bin/nope does not exist"):
        build(root, {**manifest, "interpreter": "/app/bin/nope"}, tmp_path / "s", test_kernel,
              init_binary)
