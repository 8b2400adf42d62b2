"""A tiny VM image for runtime tests: the cached microvm kernel, unicloud-init and the static
C HTTP server of the hypervisor tests (tests/hypervisor/httpd.c), stored in an image store.

`GET /` answers "hello <argv[1]>", so releases of one image differ by their command or config
(`/app/httpd $GREETING`), and `GET /env/DYNO` tells which instance answered.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from unicloud.config import Settings
from unicloud.image import cpio
from unicloud.image.store import ImageStore, file_sha256, manifest_digest

HTTPD_SOURCE = Path(__file__).resolve().parents[1] / "hypervisor" / "httpd.c"
WEB_CMD = "/app/httpd $GREETING"


def ensure_httpd(settings: Settings) -> Path:
    """Compile httpd.c statically once per machine (cached by source hash)."""
    source = HTTPD_SOURCE.read_bytes()
    compiler = "musl-gcc" if shutil.which("musl-gcc") else "gcc"
    key = hashlib.sha256(source + compiler.encode()).hexdigest()[:16]
    dest = settings.cache_dir / "test-httpd" / key / "httpd"
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "httpd"
        subprocess.run([compiler, "-static", "-Os", "-s", "-o", str(out), str(HTTPD_SOURCE)], check=True)
        shutil.move(out, dest)
    return dest


def build_test_image(settings: Settings, store_root: Path) -> tuple[str, dict]:
    """Put the test image into the store at `store_root`; return (digest, manifest)."""
    from unicloud.image.init.build import ensure_init
    from unicloud.image.kernel.build import ensure_kernel

    kernel = ensure_kernel(progress=False)
    init = ensure_init()
    httpd = ensure_httpd(settings)
    entries = [
        cpio.regular("init", init.read_bytes(), 0o755),
        cpio.directory("app"),
        cpio.regular("app/httpd", httpd.read_bytes(), 0o755),
        cpio.directory("etc"),
        cpio.directory("etc/unicloud"),
        cpio.regular("etc/unicloud/image-env", b"PATH=/app\0"),
        cpio.regular("etc/unicloud/workdir", b"/app\n"),
        cpio.regular("etc/passwd", b"root:x:0:0::/:/nonexistent\napp:x:1000:1000::/app:/nonexistent\n"),
        cpio.regular("etc/group", b"root:x:0:\napp:x:1000:\n"),
        cpio.directory("proc", 0o555),
        cpio.directory("sys", 0o555),
        cpio.directory("dev"),
        cpio.directory("tmp", 0o1777),
        cpio.char_device("dev/console", 5, 1, 0o600),
        cpio.char_device("dev/null", 1, 3, 0o666),
        cpio.char_device("dev/urandom", 1, 9, 0o666),
    ]
    store = ImageStore(store_root)
    staging = store.staging_dir()
    raw = staging / "rootfs.cpio"
    with open(raw, "wb") as f:
        cpio.write_newc(f, entries)
    subprocess.run(["zstd", "-q", "-f", "-T1", "-3", str(raw), "-o", str(staging / "rootfs.cpio.zst")], check=True)
    raw.unlink()
    shutil.copyfile(kernel, staging / "kernel")
    (staging / "sbom.cdx.json").write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5",
                                                        "components": []}))
    manifest = {
        "kernel": {"sha256": file_sha256(staging / "kernel")},
        "rootfs": {"sha256": file_sha256(staging / "rootfs.cpio.zst")},
        "sbom": {"sha256": file_sha256(staging / "sbom.cdx.json")},
        "env": {"PATH": "/app"},
        "process_types": {"web": WEB_CMD},
    }
    manifest["digest"] = manifest_digest(manifest)
    (staging / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    digest = store.put(staging)
    return digest, manifest
