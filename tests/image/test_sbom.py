"""The SBOM lists every file of the rootfs with its hash and its source."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from tests.image.test_builder import unpack
from unicloud.image.builder import build_image
from unicloud.image.inspect import export_image, inspect_image
from unicloud.image.store import ImageStore

STATUS = """Package: libgreet1
Status: install ok installed
Architecture: amd64
Version: 1.2-3

Package: removed-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 0.1
"""


def props(component) -> dict:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def test_every_file_is_listed_with_hash_and_source(static_root, test_kernel, init_binary,
                                                   tmp_path):
    root, manifest = static_root
    # a Debian package (via the dpkg database, through the /lib -> usr/lib link) ...
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    os.symlink("usr/lib", root / "lib")
    for lib in ("libc.so.6", "ld-linux-x86-64.so.2", "libgcc_s.so.1"):
        shutil.copy2(f"/usr/lib/x86_64-linux-gnu/{lib}", root / "usr/lib/x86_64-linux-gnu/")
    (root / "lib64").mkdir()
    os.symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", root / "lib64/ld-linux-x86-64.so.2")
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    (root / "var/lib/dpkg/info/libgreet1:amd64.list").write_text(
        "/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libc.so.6\n"
        "/lib64\n/lib64/ld-linux-x86-64.so.2\n/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n"
        "/lib/x86_64-linux-gnu/libgcc_s.so.1\n")
    # ... and a Python distribution (via its RECORD)
    sp = root / "app/site-packages"
    (sp / "greet").mkdir(parents=True)
    (sp / "greet/__init__.py").write_text("X = 1\n")
    (sp / "greet-0.9.dist-info").mkdir()
    (sp / "greet-0.9.dist-info/RECORD").write_text(
        "greet/__init__.py,sha256=x,6\ngreet-0.9.dist-info/RECORD,,\n")
    manifest = {**manifest, "elf": ["/lib/x86_64-linux-gnu/libc.so.6"],
                "site_packages": ["/app/site-packages"]}

    rec = build_image(root, manifest, store=ImageStore(tmp_path / "s"), kernel=test_kernel,
                      init=init_binary, log=lambda m: None)
    sbom = json.loads((rec.path / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.5"
    files = {c["name"]: c for c in sbom["components"] if c["type"] == "file"}
    entries = {p: e for p, e in unpack(rec.path / "rootfs.cpio.xz").items() if not e.is_dir}
    assert set(files) == set(entries)
    for path, e in entries.items():
        if e.is_file:
            assert files[path]["hashes"] == [{"alg": "SHA-256",
                                              "content": hashlib.sha256(e.data).hexdigest()}]

    source = {p: props(c)["unicloud:source"] for p, c in files.items()}
    assert source["/usr/lib/x86_64-linux-gnu/libc.so.6"] == "deb:libgreet1"
    assert props(files["/usr/lib/x86_64-linux-gnu/libc.so.6"])["unicloud:package"] == \
        "pkg:deb/debian/libgreet1@1.2-3?arch=amd64"
    assert source["/app/site-packages/greet/__init__.py"] == "pypi:greet"
    assert source["/app/bin/web"] == "app"
    assert source["/init"] == "unicloud-init"
    assert source["/etc/passwd"] == "build:generated"
    assert "unknown" not in source.values()
    purls = {c["purl"] for c in sbom["components"] if c["type"] == "library"}
    assert purls == {"pkg:deb/debian/libgreet1@1.2-3?arch=amd64", "pkg:pypi/greet@0.9"}

    info = inspect_image(rec.path, reaudit=True)
    assert info["digest"] == rec.digest and info["audit"]["passed"]
    assert info["sbom"]["files"] == len(files) == info["files"]
    assert info["sizes"]["total"] == info["sizes"]["kernel"] + info["sizes"]["rootfs"]
    out = export_image(rec.path, tmp_path / "export")
    assert sorted(p.name for p in out) == ["kernel", "manifest.json", "rootfs.cpio.xz",
                                           "sbom.cdx.json"]
