"""Fixtures for booting real microvms without a Python rootfs.

The test image is the cached kernel + a rootfs holding only the real init and a tiny static
HTTP server (httpd.c), so these tests exercise exactly the boot path production images use.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from unicloud.hypervisor.accel import probe_accelerator
from unicloud.hypervisor.vm import VMManager
from unicloud.image import cpio
from unicloud.image.compression import compress_layer
from unicloud.image.init import ensure_init
from unicloud.image.kernel import ensure_kernel
from unicloud.image.store import ROOTFS_FILE

HERE = Path(__file__).resolve().parent
IMAGE_ENV = {"PATH": "/bin", "LANG": "C.UTF-8", "FROM_IMAGE": "image-default"}


def compile_static(source: Path, dest: Path) -> Path:
    compiler = shutil.which("musl-gcc") or "gcc"
    subprocess.run([compiler, "-static", "-Os", "-s", "-o", str(dest), str(source)], check=True)
    return dest


def build_test_rootfs(init: Path, httpd: Path, filler: int = 0) -> bytes:
    """A shell-less rootfs: /init, /bin/httpd, the device nodes the kernel needs before init."""
    image_env = b"".join(f"{k}={v}".encode() + b"\0" for k, v in IMAGE_ENV.items())
    entries = [
        cpio.regular("init", init.read_bytes(), 0o755),
        cpio.directory("bin"),
        cpio.regular("bin/httpd", httpd.read_bytes(), 0o755),
        cpio.directory("app"),
        cpio.directory("etc"),
        cpio.directory("etc/unicloud"),
        cpio.regular("etc/unicloud/image-env", image_env),
        cpio.directory("dev"),
        cpio.char_device("dev/console", 5, 1),
        cpio.char_device("dev/null", 1, 3, 0o666),
        cpio.directory("proc"),
        cpio.directory("sys"),
        cpio.directory("tmp", 0o1777),
        cpio.regular("etc/filler", b"x" * filler),
    ]
    buf = io.BytesIO()
    cpio.write_newc(buf, entries)
    return buf.getvalue()


@pytest.fixture(scope="session")
def kernel() -> Path:
    return ensure_kernel(progress=False)


@pytest.fixture(scope="session")
def test_image(tmp_path_factory, kernel) -> Path:
    work = tmp_path_factory.mktemp("image")
    httpd = compile_static(HERE / "httpd.c", work / "httpd")
    image = work / "image"
    image.mkdir()
    # one xz stream, as the image builder writes a layer (xz streams are 4-byte multiples, so
    # the padding before the boot config is exercised by tests/hypervisor/test_bootconfig.py)
    (image / ROOTFS_FILE).write_bytes(compress_layer(build_test_rootfs(ensure_init(), httpd)))
    shutil.copy(kernel, image / "kernel")
    return image


@pytest.fixture
def manager(tmp_path, kernel):
    probe_accelerator(kernel=kernel)
    m = VMManager(tmp_path / "vms")
    yield m
    for info in m.list():
        if info.running:
            m.stop(info.instance_id, grace=3)


def wait_http(port: int, path: str = "/", timeout: float = 90) -> httpx.Response:
    """First successful HTTP response from the VM (slirp accepts before the guest listens)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"no HTTP answer on port {port} within {timeout}s: {last}")


def wait_exited(m: VMManager, instance_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = m.status(instance_id)
        if not info.running:
            return info
        time.sleep(0.1)
    raise AssertionError(f"{instance_id} still running after {timeout}s")
