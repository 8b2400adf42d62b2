"""ELF closure: loader, DT_NEEDED through symlinks, $ORIGIN runpaths, libgcc_s, CA bundle."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.image.conftest import compile_c
from unicloud.image.closure import ClosureBuilder, ClosureError, read_elf
from unicloud.image.rootpath import resolve

MULTIARCH = "usr/lib/x86_64-linux-gnu"


def merged_usr_root(base: Path) -> Path:
    """A Debian-like merged-/usr root holding the host's glibc, laid out like bookworm."""
    root = base / "root"
    (root / MULTIARCH).mkdir(parents=True)
    (root / "usr/lib64").mkdir(parents=True)
    for lib in ("libc.so.6", "ld-linux-x86-64.so.2", "libgcc_s.so.1"):
        shutil.copy2(f"/{MULTIARCH}/{lib}", root / MULTIARCH / lib)
    os.symlink("usr/lib", root / "lib")
    os.symlink("usr/lib64", root / "lib64")
    os.symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
               root / "usr/lib64/ld-linux-x86-64.so.2")
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ssl/certs/ca-certificates.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (root / "app").mkdir()
    return root


def test_dynamic_binary_with_origin_runpath(tmp_path):
    root = merged_usr_root(tmp_path)
    (root / "app/lib").mkdir()
    compile_c(root / "app/lib/libgreet.so", "int greet(void) { return 42; }\n", static=False,
              extra=["-shared", "-fPIC"])
    compile_c(root / "app/web", "int greet(void);\nint main(void) { return greet() - 42; }\n",
              static=False, extra=[f"-L{root / 'app/lib'}", "-lgreet",
                                   "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib"])
    assert read_elf(root / "app/web").runpath == ("$ORIGIN/lib",)

    cb = ClosureBuilder(root)
    cb.add_elf("/app/web", "interpreter")
    cb.add_always_dlopened()
    cb.add_ca_certificates()
    c = cb.closure
    assert {"/app/web", "/app/lib/libgreet.so", f"/{MULTIARCH}/libc.so.6",
            f"/{MULTIARCH}/ld-linux-x86-64.so.2", f"/{MULTIARCH}/libgcc_s.so.1",
            "/etc/ssl/certs/ca-certificates.crt"} <= c.files
    # the loader path in PT_INTERP crosses two links, both must ship
    assert c.symlinks["/lib64"] == "usr/lib64"
    assert c.symlinks["/usr/lib64/ld-linux-x86-64.so.2"] == \
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert c.symlinks["/lib"] == "usr/lib"


def test_missing_library_is_named(tmp_path):
    root = merged_usr_root(tmp_path)
    (root / "app/lib").mkdir()
    compile_c(root / "app/lib/libgreet.so", "int greet(void) { return 1; }\n", static=False,
              extra=["-shared", "-fPIC"])
    compile_c(root / "app/web", "int greet(void);\nint main(void) { return greet(); }\n",
              static=False, extra=[f"-L{root / 'app/lib'}", "-lgreet"])
    (root / "app/lib/libgreet.so").unlink()
    with pytest.raises(ClosureError, match=r"/app/web needs libgreet.so"):
        ClosureBuilder(root).add_elf("/app/web", "interpreter")


def test_static_binary_needs_no_libraries(tmp_path, static_hello):
    root = tmp_path / "r"
    (root / "app").mkdir(parents=True)
    shutil.copy2(static_hello, root / "app/web")
    cb = ClosureBuilder(root)
    cb.add_elf("/app/web", "interpreter")
    cb.add_always_dlopened()  # static: no libgcc_s either
    assert cb.closure.files == {"/app/web"} and cb.closure.symlinks == {}


def test_links_never_escape_the_root(tmp_path):
    root = tmp_path / "r"
    (root / "usr/bin").mkdir(parents=True)
    os.symlink("../../../../../../etc/passwd", root / "usr/bin/escape")
    assert resolve(root, "/usr/bin/escape").path == "/etc/passwd"
    with pytest.raises(ClosureError, match="does not exist in the build root"):
        ClosureBuilder(root).add_path("/usr/bin/escape", "test")
