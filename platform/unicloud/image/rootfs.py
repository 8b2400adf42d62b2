"""Assemble the image's root filesystem as a list of cpio entries (packed by `layers`).

The tree is never materialised on disk: entries are built in memory with fixed owners, modes
and mtimes, so the archive depends only on the content of the build root and the manifest.
"""

from __future__ import annotations

import posixpath
import stat
from dataclasses import dataclass, field
from pathlib import Path

from unicloud.image import cpio
from unicloud.image.closure import Closure
from unicloud.image.rootpath import host_path
from unicloud.image.stdlib import StdlibPlan

APP_UID = 1000
APP_GID = 1000
ETC_PASSWD = "root:x:0:0:root:/root:/nonexistent\napp:x:1000:1000:app:/app:/nonexistent\n"
ETC_GROUP = "root:x:0:\napp:x:1000:\n"
ETC_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
# Without it glibc tries DNS before /etc/hosts, so "localhost" would wait for the resolver.
ETC_NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
# Kernel opens /dev/console before init runs; null/urandom are used before devtmpfs is mounted.
DEVICE_NODES = (("dev/console", 5, 1, 0o600), ("dev/null", 1, 3, 0o666),
                ("dev/urandom", 1, 9, 0o666))
# Generated from the app's manifest: they go to the runtime layer, not the shared system one.
APP_RUNTIME_FILES = ("/etc/unicloud/image-env", "/etc/unicloud/workdir")
EMPTY_DIRS = {"proc": 0o555, "sys": 0o555, "dev": 0o755, "tmp": 0o1777}
# Never copied from the app: VCS data, build caches, and the installer the image must not have.
DEFAULT_EXCLUDES = ("/.git", "/.unicloud/cache", "/__pycache__")
VENV_EXCLUDES = ("/bin/pip", "/bin/pip3", "/site-packages/pip", "/site-packages/pip-")


class RootfsError(RuntimeError):
    """The rootfs cannot be assembled (bad manifest field, unreadable file, ...)."""


@dataclass
class Rootfs:
    entries: dict[str, cpio.CpioEntry] = field(default_factory=dict)  # keyed by abs path
    origins: dict[str, str] = field(default_factory=dict)  # abs path -> provenance hint

    def add(self, path: str, entry_fn, origin: str, **kw) -> None:
        rel = path.strip("/")
        self._parents(path)
        self.entries[path] = entry_fn(rel, **kw)
        self.origins[path] = origin

    def _parents(self, path: str) -> None:
        parent = posixpath.dirname(path)
        while parent not in ("/", ""):
            if parent not in self.entries:
                self.entries[parent] = cpio.directory(parent.strip("/"))
                self.origins[parent] = "directory"
            parent = posixpath.dirname(parent)

    def finalise(self, mtime: int) -> list[cpio.CpioEntry]:
        """Root-owned, fixed mtime, sorted: the only metadata that varies is the content."""
        return [cpio.CpioEntry(**{**e.__dict__, "uid": 0, "gid": 0, "mtime": mtime})
                for _, e in sorted(self.entries.items())]


def make_excluder(manifest: dict):
    """A predicate on in-root paths: the manifest's excludes plus the defaults."""
    excludes = [e.rstrip("/") for e in manifest.get("exclude", [])]
    include = [i.rstrip("/") for i in manifest.get("include", [])]

    def excluded(p: str) -> bool:
        if any(p == e or p.startswith(e + "/") for e in excludes):
            return True
        for inc in include:
            if p.startswith(inc + "/"):
                rel = p[len(inc):]
                if any(f"{d}/" in rel + "/" for d in DEFAULT_EXCLUDES):
                    return True
        return any(v in p and (p.endswith(v) or p[p.index(v) + len(v)] in "/-0123456789.")
                   for v in VENV_EXCLUDES)

    return excluded


def _perm(mode: int) -> int:
    """Keep only whether a file is executable: everything is 0644/0755, root-owned."""
    return 0o755 if mode & 0o111 else 0o644


def encode_env(env: dict) -> bytes:
    out = []
    for key in sorted(env):
        value = str(env[key])
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise RootfsError(f"manifest env var {key!r} cannot be passed to init")
        out.append(f"{key}={value}".encode() + b"\0")
    return b"".join(out)


def assemble(root: Path, manifest: dict, closure: Closure, init_binary: Path,
             stdlib: StdlibPlan | None = None) -> Rootfs:
    fs = Rootfs()
    for path in sorted(closure.files):
        hp = host_path(root, path)
        st = hp.lstat()
        if stat.S_ISDIR(st.st_mode):
            fs.add(path, cpio.directory, "closure")
        elif stat.S_ISREG(st.st_mode):
            try:
                data = hp.read_bytes()
            except OSError as exc:
                raise RootfsError(f"cannot read {path} from the build root: {exc}") from exc
            fs.add(path, cpio.regular, "root", data=data, perm=_perm(st.st_mode))
    for path, target in sorted(closure.symlinks.items()):
        fs.add(path, cpio.symlink, "root", target=target)

    if stdlib is not None:
        fs.add(stdlib.zip_path, cpio.regular, "stdlib-zip", data=stdlib.zip_bytes)
        for pyc, data in sorted(stdlib.pycache.items()):
            fs.add(pyc, cpio.regular, "bytecode", data=data)

    fs.add("/init", cpio.regular, "unicloud-init", data=init_binary.read_bytes(), perm=0o755)
    for path, text in (("/etc/passwd", ETC_PASSWD), ("/etc/group", ETC_GROUP),
                       ("/etc/hosts", ETC_HOSTS), ("/etc/nsswitch.conf", ETC_NSSWITCH)):
        fs.add(path, cpio.regular, "generated", data=text.encode())
    workdir = manifest.get("workdir") or "/app"
    if not workdir.startswith("/"):
        raise RootfsError(f"manifest workdir must be absolute, got {workdir!r}")
    fs.add("/etc/unicloud/image-env", cpio.regular, "generated",
           data=encode_env(manifest.get("env", {})))
    fs.add("/etc/unicloud/workdir", cpio.regular, "generated", data=workdir.encode() + b"\n")
    for name, perm in EMPTY_DIRS.items():
        fs.add("/" + name, cpio.directory, "generated", perm=perm)
    if workdir not in fs.entries:
        fs.add(workdir, cpio.directory, "generated")
    for path, major, minor, perm in DEVICE_NODES:
        fs.add("/" + path, cpio.char_device, "generated", major=major, minor=minor, perm=perm)
    return fs
