"""The audit catches shells, tools and unsafe modes, by path and by content."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from tests.image.conftest import compile_c
from unicloud.image import cpio
from unicloud.image.audit import audit_entries
from unicloud.image.builder import ImageAuditError, build_image
from unicloud.image.store import ImageStore


def rules(entries) -> set[tuple[str, str]]:
    return {(v["path"], v["rule"]) for v in audit_entries(entries).as_dict()["violations"]}


def elf(path: str, host: str | Path, perm: int = 0o755) -> cpio.CpioEntry:
    return cpio.regular(path, Path(host).read_bytes(), perm)


def test_clean_tree_passes(static_hello):
    entries = [cpio.directory("app"), elf("app/bin/web", static_hello),
               cpio.regular("etc/passwd", b"root:x:0:0::/:/nonexistent\n"),
               cpio.directory("tmp", 0o1777), cpio.char_device("dev/null", 1, 3, 0o666),
               cpio.symlink("lib", "usr/lib")]
    result = audit_entries(entries).as_dict()
    assert result == {"passed": True, "checked": 6, "violations": []}


def test_planted_shell_is_caught_by_name_and_content():
    dash = shutil.which("dash") or "/bin/sh"
    found = rules([elf("bin/sh", dash)])
    assert ("/bin/sh", "forbidden-name") in found
    assert ("/bin/sh", "forbidden-content") in found


def test_renamed_shell_and_coreutils_are_caught_by_content():
    found = rules([elf("app/vendor/helper", "/bin/bash"), elf("app/tool.bin", "/bin/ls")])
    assert found == {("/app/vendor/helper", "forbidden-content"),
                     ("/app/tool.bin", "forbidden-content")}


def test_renamed_busybox_is_caught_by_its_banner(tmp_path):
    # A real ELF carrying busybox's version banner, as every busybox build does.
    fake_bb = compile_c(tmp_path / "bb", 'const char *v = "BusyBox v1.36.1 (2023-01-01)";\n'
                        'int main(void) { return v[0] == 0; }\n')
    v = audit_entries([elf("app/lib/libthing.so", fake_bb)]).as_dict()["violations"]
    assert [(x["rule"], x["detail"]) for x in v] == [("forbidden-content",
                                                      "ELF file looks like busybox")]


def test_toolchain_and_package_manager_names():
    found = rules([cpio.regular("usr/bin/x86_64-linux-gnu-gcc-12", b"x", 0o755),
                   cpio.symlink("usr/bin/cc", "gcc"),
                   cpio.regular("app/.venv/bin/pip3.11", b"#!/app/.venv/bin/python\n", 0o755),
                   cpio.regular("app/.venv/lib/python3.11/site-packages/pip/__init__.py", b""),
                   cpio.regular("app/docs/install", b"not executable, not in a bin dir")])
    assert found == {("/usr/bin/x86_64-linux-gnu-gcc-12", "forbidden-name"),
                     ("/usr/bin/cc", "forbidden-name"),
                     ("/app/.venv/bin/pip3.11", "forbidden-name"),
                     ("/app/.venv/lib/python3.11/site-packages/pip/__init__.py",
                      "package-manager")}


def test_modes_setuid_setgid_writable_and_devices():
    entries = [
        cpio.regular("app/suid", b"x", 0o4755), cpio.regular("app/sgid", b"x", 0o2755),
        cpio.regular("app/shared.db", b"x", 0o666), cpio.directory("app/uploads", 0o777),
        cpio.CpioEntry("app/owned", stat.S_IFREG | 0o644, b"x", uid=1000, gid=1000),
        cpio.regular("tmp/scratch", b"x", 0o666), cpio.directory("tmp", 0o1777),
        cpio.char_device("dev/null", 1, 3, 0o666), cpio.char_device("dev/mem", 1, 1, 0o600),
    ]
    assert rules(entries) == {
        ("/app/suid", "setuid"), ("/app/sgid", "setgid"), ("/app/shared.db", "writable"),
        ("/app/uploads", "writable"), ("/app/owned", "writable"), ("/dev/mem", "device-node")}


def test_build_fails_and_names_the_planted_paths(static_root, test_kernel, init_binary,
                                                 tmp_path):
    root, manifest = static_root
    shutil.copy2(root / "app" / "bin" / "web", root / "app" / "bin" / "sh")
    compile_c(root / "app" / "bin" / "renamed",
              'const char *v = "BusyBox v1.36.1";\nint main(void) { return v[0] == 0; }\n')
    store = ImageStore(tmp_path / "store")
    with pytest.raises(ImageAuditError) as err:
        build_image(root, manifest, store=store, kernel=test_kernel, init=init_binary,
                    log=lambda m: None)
    paths = {v["path"] for v in err.value.violations}
    assert paths == {"/app/bin/sh", "/app/bin/renamed"}
    assert "/app/bin/sh" in str(err.value)
    assert store.list() == []
