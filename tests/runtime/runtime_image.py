"""The runtime tests' VM image: the hypervisor tests' rootfs (real init + the static C httpd of
tests/hypervisor/httpd.c) with the cached microvm kernel, put into a real image store.

`GET /` answers "hello <argv[1]>", so releases of this one image differ by config
(`/bin/httpd $GREETING`), and `GET /env/DYNO` tells which instance answered.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from tests.hypervisor.conftest import HERE as HYPERVISOR_TESTS, build_test_rootfs, compile_static
from unicloud.image import cpio
from unicloud.image.compression import compress_layer
from unicloud.image.init import ensure_init
from unicloud.image.kernel import ensure_kernel
from unicloud.image.store import ROOTFS_FILE, ImageStore, file_sha256, manifest_digest

WEB_CMD = "/bin/httpd $GREETING"


def build_test_image(work: Path, store_root: Path, app_files: dict[str, bytes] | None = None) -> tuple[str, dict]:
    """Put the test image into the store at `store_root`; return (digest hex, manifest).

    `app_files` (e.g. {"CHECKS": ...}) land in /app, appended as a second cpio archive."""
    httpd = compile_static(HYPERVISOR_TESTS / "httpd.c", work / "httpd")
    store = ImageStore(store_root)
    staging = store.staging_dir()
    rootfs = build_test_rootfs(ensure_init(), httpd)
    if app_files:
        extra = io.BytesIO()
        cpio.write_newc(extra, [cpio.regular(f"app/{name}", data) for name, data in sorted(app_files.items())])
        rootfs += b"\0" * (-len(rootfs) % 4) + extra.getvalue()
    (staging / ROOTFS_FILE).write_bytes(compress_layer(rootfs))
    shutil.copyfile(ensure_kernel(progress=False), staging / "kernel")
    (staging / "sbom.cdx.json").write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5",
                                                        "components": []}))
    manifest = {
        "kernel": {"sha256": file_sha256(staging / "kernel")},
        "rootfs": {"sha256": file_sha256(staging / ROOTFS_FILE)},
        "sbom": {"sha256": file_sha256(staging / "sbom.cdx.json")},
        "process_types": {"web": WEB_CMD},
    }
    manifest["digest"] = manifest_digest(manifest)
    (staging / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    return store.put(staging), manifest
