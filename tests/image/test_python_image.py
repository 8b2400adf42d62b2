"""A real Python image: bookworm stack + venv + WSGI hello -> image -> boot -> HTTP 200."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.support import free_port
from unicloud.image.builder import build_image
from unicloud.image.inspect import inspect_image
from unicloud.image.store import ImageStore
from tests.image.test_builder import unpack

pytestmark = pytest.mark.slow

HELLO_WSGI = '''\
"""Hello WSGI app: its docstring must survive in its bytecode."""
import os
import socketserver
from wsgiref.simple_server import WSGIServer, make_server

import uc_docs  # noqa: F401  (reads its own docstring when imported)


class Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_bind(self):  # skip getfqdn(): there is no resolver to ask at boot
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.server_address[1]
        self.setup_environ()


def app(environ, start_response):
    body = b"Hello from unicloud\\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    make_server("0.0.0.0", int(os.environ["PORT"]), app, server_class=Server).serve_forever()
'''

MANIFEST = {
    "runtime": "python", "version": "3.11", "interpreter": "/usr/bin/python3.11",
    "stdlib": "/usr/lib/python3.11",
    "site_packages": ["/app/.venv/lib/python3.11/site-packages"],
    "include": ["/app"], "exclude": ["/app/.unicloud/cache"], "elf": [],
    "env": {"PATH": "/app/.venv/bin:/usr/bin", "PYTHONUNBUFFERED": "1"},
    "workdir": "/app", "process_types": {"web": "python app.py"},
}

SITE_PACKAGES = "/app/.venv/lib/python3.11/site-packages"
# a library that reads its own docstring at run time (as click and typer do)
SITE_MODULE = '''"""uc_docs: a site-packages module whose docstring must survive."""
HELP = __doc__.split(":")[0]
'''


@pytest.fixture(scope="module")
def python_root(tmp_path_factory):
    """The cached bookworm build stack as the lower layer of an overlay, the app on top."""
    from unicloud.build.stack import ensure_stack

    stack = ensure_stack("debian-bookworm")
    base = tmp_path_factory.mktemp("pyroot")
    upper, work, merged = base / "upper", base / "work", base / "root"
    for d in (upper, work, merged):
        d.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={stack},upperdir={upper},workdir={work}", str(merged)],
                   check=True)
    try:
        app = merged / "app"
        app.mkdir(exist_ok=True)
        (app / "app.py").write_text(HELLO_WSGI)
        (app / "Procfile").write_text("web: python app.py\n")
        subprocess.run(["chroot", str(merged), "/usr/bin/python3.11", "-m", "venv",
                        "--without-pip", "/app/.venv"], check=True)
        (merged / SITE_PACKAGES.lstrip("/") / "uc_docs.py").write_text(SITE_MODULE)
        (app / ".unicloud").mkdir(exist_ok=True)
        (app / ".unicloud" / "runtime.json").write_text(json.dumps(MANIFEST))
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=False)


@pytest.fixture(scope="module")
def kernel() -> Path:
    from unicloud.image.kernel.build import ensure_kernel

    return ensure_kernel("microvm")


def test_python_image_is_reproducible_and_minimal(python_root, kernel, tmp_path):
    # a: everything done from scratch; b: parses, bytecode and the runtime layer all from a's
    # cache; c: from scratch again in another cache. The caches must not change a byte.
    a = build_image(python_root, MANIFEST, store=ImageStore(tmp_path / "a"), kernel=kernel,
                    cache_dir=tmp_path / "cache")
    b = build_image(python_root, MANIFEST, store=ImageStore(tmp_path / "b"), kernel=kernel,
                    cache_dir=tmp_path / "cache")
    c = build_image(python_root, MANIFEST, store=ImageStore(tmp_path / "c"), kernel=kernel,
                    cache_dir=tmp_path / "other-cache")
    assert any((tmp_path / "cache" / "stdlib" / "pyc").rglob("*.pyc"))
    assert a.digest == b.digest == c.digest
    assert (a.path / "rootfs.cpio.xz").read_bytes() == (b.path / "rootfs.cpio.xz").read_bytes()
    files = unpack(a.path / "rootfs.cpio.xz")
    for needed in ("/usr/bin/python3.11", "/usr/lib/python311.zip", "/usr/lib/python3.11/os.py",
                   "/app/app.py", "/app/.venv/pyvenv.cfg", "/lib64", "/etc/ssl/certs/ca-certificates.crt",
                   "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1", "/usr/lib/x86_64-linux-gnu/libc.so.6"):
        assert needed in files, needed
    assert files["/app/.venv/bin/python"].is_symlink
    assert not any(p.startswith("/usr/lib/python3.11/") and p.endswith(".py") and
                   p != "/usr/lib/python3.11/os.py" for p in files)
    # the build stack's compilers and shells stay behind
    assert not {"/usr/bin/gcc", "/bin/sh", "/usr/bin/dpkg", "/bin/bash"} & set(files)
    info = inspect_image(a.path, reaudit=True)
    assert info["audit"]["passed"]
    assert info["sbom"]["by_source"]["deb"] > 5 and "unknown" not in info["sbom"]["by_source"]


def test_python_image_boots_and_serves(python_root, kernel, tmp_path):
    from unicloud.hypervisor.vm import VMManager

    rec = build_image(python_root, MANIFEST, store=ImageStore(tmp_path / "s"), kernel=kernel)
    manager = VMManager(tmp_path / "vms")
    port = free_port()
    manager.start("img-test", rec.path, env={"PORT": "8080"}, cmd="python app.py",
                  host_port=port)
    try:
        deadline, body, last = time.monotonic() + 120, None, None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                    body = r.read()
                    break
            except OSError as exc:
                last = exc
                time.sleep(0.5)
        console = manager.console_path("img-test").read_text(errors="replace")
        assert body == b"Hello from unicloud\n", f"{last}\n{console[-3000:]}"
    finally:
        manager.stop("img-test", grace=5)
        manager.remove("img-test")


def test_only_the_stdlib_zip_loses_docstrings(python_root, kernel, tmp_path):
    """The zipped stdlib is compiled like -OO; the app and site-packages keep their docstrings."""
    rec = build_image(python_root, MANIFEST, store=ImageStore(tmp_path / "s"), kernel=kernel,
                      log=lambda m: None)
    files = unpack(rec.path / "rootfs.cpio.xz")
    with zipfile.ZipFile(io.BytesIO(files["/usr/lib/python311.zip"].data)) as zf:
        json_pyc = zf.read("json/__init__.pyc")
    json_doc = ast.get_docstring(ast.parse((python_root / "usr/lib/python3.11/json/__init__.py")
                                           .read_text()), clean=False)
    assert json_doc and json_doc[:60].encode() not in json_pyc
    assert b"JSON (JavaScript Object Notation)" not in json_pyc
    app_pyc = files["/app/__pycache__/app.cpython-311.pyc"].data
    assert b"Hello WSGI app: its docstring must survive" in app_pyc
    site_pyc = files[f"{SITE_PACKAGES}/__pycache__/uc_docs.cpython-311.pyc"].data
    assert b"uc_docs: a site-packages module whose docstring must survive" in site_pyc
