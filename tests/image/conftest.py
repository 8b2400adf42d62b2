"""Shared fixtures for the image builder tests: small real roots built from compiled C."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

HELLO_C = r"""
#include <stdio.h>
int main(void) { puts("hello from a static binary"); return 0; }
"""


def compile_c(out: Path, source: str, *, static: bool = True, extra: list[str] | None = None,
              compiler: str | None = None) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    cc = compiler or (shutil.which("musl-gcc") if static else None) or "gcc"
    cmd = [cc, *(["-static"] if static else []), "-O1", "-o", str(out), str(src), *(extra or [])]
    subprocess.run(cmd, check=True, capture_output=True)
    src.unlink()
    return out


@pytest.fixture(scope="session")
def static_hello(tmp_path_factory) -> Path:
    return compile_c(tmp_path_factory.mktemp("bin") / "hello", HELLO_C)


@pytest.fixture(scope="session")
def test_kernel(tmp_path_factory) -> Path:
    """Stands in for the bzImage in tests about the rootfs and the store: the builder treats the
    kernel as opaque bytes. Boot tests use the real cached kernel."""
    p = tmp_path_factory.mktemp("kernel") / "bzImage"
    p.write_bytes(b"not-a-kernel\0" * 4096)
    return p


@pytest.fixture(scope="session")
def init_binary() -> Path:
    from unicloud.image.init.build import ensure_init

    return ensure_init()


def make_static_root(base: Path, binary: Path, *, name: str = "web") -> tuple[Path, dict]:
    root = base / "root"
    (root / "app" / "bin").mkdir(parents=True)
    shutil.copy2(binary, root / "app" / "bin" / name)
    (root / "app" / "README.txt").write_text("static test app\n")
    (root / "app" / ".git").mkdir()
    (root / "app" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "app" / ".unicloud" / "cache").mkdir(parents=True)
    (root / "app" / ".unicloud" / "cache" / "junk").write_text("cache\n")
    manifest = {
        "runtime": "static", "version": "1", "interpreter": f"/app/bin/{name}",
        "include": ["/app"], "exclude": ["/app/.unicloud/cache"], "elf": [],
        "env": {"PATH": "/app/bin", "GREETING": "hi there"}, "workdir": "/app",
        "process_types": {"web": f"/app/bin/{name}"},
    }
    (root / "app" / ".unicloud" / "runtime.json").write_text(json.dumps(manifest))
    return root, manifest


@pytest.fixture
def static_root(tmp_path, static_hello) -> tuple[Path, dict]:
    return make_static_root(tmp_path, static_hello)
