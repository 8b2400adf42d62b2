"""The runtime closure of an app: every file of the build root its processes need at run time.

ELF dependencies are read with pyelftools and resolved with the dynamic loader's own search
order, re-implemented here, instead of running `ldd`/`ld.so --list` in a chroot: the build root
was written by untrusted build steps, and reading it is safe where executing its loader as root
is not.
"""

from __future__ import annotations

import glob
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from unicloud.image.rootpath import RootPathError, host_path, resolve, to_root_relative

ELF_MAGIC = b"\x7fELF"
# Debian's multiarch directories come first in its ld.so.cache, then the legacy ones.
DEFAULT_LIBRARY_DIRS = (
    "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
    "/lib64", "/usr/lib64", "/lib", "/usr/lib",
)
# glibc dlopen()s libgcc_s for pthread_exit/cancel unwinding; no DT_NEEDED names it.
ALWAYS_DLOPENED = ("libgcc_s.so.1",)
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Where OpenSSL (and so Python's ssl) looks for the bundle by default on Debian.
CA_ALIASES = ("/usr/lib/ssl/cert.pem", "/usr/lib/ssl/certs")


class ClosureError(RuntimeError):
    """A file the runtime needs is missing from the build root."""


@dataclass(frozen=True)
class ElfInfo:
    elfclass: int
    machine: str
    interp: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]

    @property
    def is_dynamic(self) -> bool:
        return bool(self.interp or self.needed)


@dataclass
class Closure:
    """Paths inside the root: regular files and directories to copy, symlinks to recreate."""

    files: set[str] = field(default_factory=set)
    symlinks: dict[str, str] = field(default_factory=dict)
    elf: dict[str, ElfInfo] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def paths(self) -> set[str]:
        return self.files | set(self.symlinks)


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False


def read_elf(path: Path) -> ElfInfo:
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            interp = None
            needed: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_INTERP":
                    interp = seg.get_interp_name()
            for sec in elf.iter_sections():
                if not isinstance(sec, DynamicSection):
                    continue
                for tag in sec.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif tag.entry.d_tag == "DT_RPATH":
                        rpath += tag.rpath.split(":")
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        runpath += tag.runpath.split(":")
            return ElfInfo(elf.elfclass, elf["e_machine"], interp, tuple(needed),
                           tuple(rpath), tuple(runpath))
    except (ELFError, OSError) as exc:
        raise ClosureError(f"cannot read ELF file {path}: {exc}") from exc


def loader_config_dirs(root: Path) -> list[str]:
    """Directories from the root's /etc/ld.so.conf (with its `include` globs)."""
    dirs: list[str] = []

    def parse(conf: str, depth: int = 0) -> None:
        hp = host_path(root, conf)
        if depth > 8 or not hp.is_file():
            return
        for line in hp.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("include "):
                pattern = line.split(None, 1)[1]
                if not pattern.startswith("/"):
                    pattern = posixpath.join(posixpath.dirname(conf), pattern)
                for match in sorted(glob.glob(str(host_path(root, pattern)))):
                    parse(to_root_relative(root, Path(match)), depth + 1)
            elif line.startswith("/"):
                dirs.append(line)

    parse("/etc/ld.so.conf")
    return dirs


class ClosureBuilder:
    """Accumulates paths and walks ELF dependencies inside one build root."""

    def __init__(self, root: Path, *, library_path: list[str] | None = None):
        self.root = root
        self.closure = Closure()
        self.library_path = library_path or []
        self.search_dirs = loader_config_dirs(root) + list(DEFAULT_LIBRARY_DIRS)
        self._walked: set[str] = set()

    # -- plain paths ---------------------------------------------------------------------------
    def add_path(self, path: str, reason: str, *, must_exist: bool = True) -> str | None:
        """Add `path` plus every symlink crossed to reach it; return its real in-root path."""
        try:
            res = resolve(self.root, path)
        except RootPathError as exc:
            raise ClosureError(str(exc)) from exc
        hp = host_path(self.root, res.path)
        if not (hp.exists() and not hp.is_symlink()):
            if must_exist:
                raise ClosureError(f"{reason}: {path} does not exist in the build root")
            return None
        for link, target in res.links:
            self.closure.symlinks[link] = target
            self.closure.reasons.setdefault(link, reason)
        self.closure.files.add(res.path)
        self.closure.reasons.setdefault(res.path, reason)
        return res.path

    # -- ELF -----------------------------------------------------------------------------------
    def add_elf(self, path: str, reason: str) -> None:
        """Add an ELF file and, recursively, the interpreter and libraries it loads."""
        real = self.add_path(path, reason)
        assert real is not None
        self._walk(real, reason, loader_rpath=())

    def _walk(self, real: str, reason: str, loader_rpath: tuple[str, ...]) -> None:
        if real in self._walked:
            return
        self._walked.add(real)
        info = read_elf(host_path(self.root, real))
        self.closure.elf[real] = info
        origin = posixpath.dirname(real)
        if info.interp:
            interp = self.add_path(info.interp, f"loader of {real}")
            assert interp is not None
            self._walked.add(interp)
        own_rpath = tuple(self._expand(d, origin) for d in info.rpath)
        rpath = (own_rpath + loader_rpath) if not info.runpath else ()
        runpath = tuple(self._expand(d, origin) for d in info.runpath)
        for name in info.needed:
            lib = self._find_library(name, info, rpath, runpath)
            if lib is None:
                raise ClosureError(f"{real} needs {name}, which is not in the build root "
                                   f"(searched rpath/runpath, ld.so.conf and default dirs)")
            lib_real = self.add_path(lib, f"needed by {real}")
            assert lib_real is not None
            self._walk(lib_real, reason, loader_rpath=rpath)

    def _expand(self, d: str, origin: str) -> str:
        return d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)

    def _find_library(self, name: str, info: ElfInfo, rpath: tuple[str, ...],
                      runpath: tuple[str, ...]) -> str | None:
        if "/" in name:
            return name if self._compatible(name, info) else None
        for d in (*rpath, *self.library_path, *runpath, *self.search_dirs):
            cand = posixpath.join(d, name)
            if self._compatible(cand, info):
                return cand
        return None

    def _compatible(self, path: str, wanted: ElfInfo) -> bool:
        """Exists inside the root and is an ELF of the same class and machine (ld.so skips
        others, e.g. 32-bit libraries in a multilib dir)."""
        try:
            real = resolve(self.root, path).path
        except RootPathError:
            return False
        hp = host_path(self.root, real)
        if not hp.is_file() or not is_elf(hp):
            return False
        info = read_elf(hp)
        return info.elfclass == wanted.elfclass and info.machine == wanted.machine

    def add_always_dlopened(self) -> None:
        """libgcc_s is loaded by glibc at thread exit; only dynamic programs need it."""
        dynamic = [i for i in self.closure.elf.values() if i.is_dynamic]
        if not dynamic:
            return
        for name in ALWAYS_DLOPENED:
            lib = self._find_library(name, dynamic[0], (), ())
            if lib is None:
                raise ClosureError(f"{name} is not in the build root; glibc needs it at run time")
            real = self.add_path(lib, "dlopened by glibc")
            assert real is not None
            self._walk(real, "dlopened by glibc", ())

    def add_ca_certificates(self) -> None:
        if self.add_path(CA_BUNDLE, "CA certificates", must_exist=False) is None:
            return
        for alias in CA_ALIASES:
            hp = host_path(self.root, alias)
            if hp.is_symlink():  # the link only, not the whole /etc/ssl/certs directory
                parent = self.add_path(posixpath.dirname(alias), "CA certificates")
                assert parent is not None
                self.closure.symlinks[posixpath.join(parent, posixpath.basename(alias))] = \
                    os.readlink(hp)

    # -- trees ---------------------------------------------------------------------------------
    def add_tree(self, top: str, reason: str, excluded) -> None:
        """Add a directory tree (or single file); walk ELF files in it and links out of it."""
        real_top = self.add_path(top, reason)
        assert real_top is not None
        hp_top = host_path(self.root, real_top)
        if not hp_top.is_dir():
            if is_elf(hp_top):
                self._walk(real_top, reason, ())
            return
        for dirpath, dirnames, filenames in os.walk(hp_top):
            rel_dir = to_root_relative(self.root, Path(dirpath))
            keep = []
            for d in sorted(dirnames):
                p = posixpath.join(rel_dir, d)
                if excluded(p):
                    continue
                if os.path.islink(os.path.join(dirpath, d)):
                    self._add_link(p, reason)
                else:
                    keep.append(d)
                    self.closure.files.add(p)
                    self.closure.reasons.setdefault(p, reason)
            dirnames[:] = keep
            for name in sorted(filenames):
                p = posixpath.join(rel_dir, name)
                if excluded(p):
                    continue
                hp = Path(dirpath) / name
                if hp.is_symlink():
                    self._add_link(p, reason)
                    continue
                if not hp.is_file():
                    continue  # sockets, fifos, devices never ship from a build tree
                self.closure.files.add(p)
                self.closure.reasons.setdefault(p, reason)
                if is_elf(hp):
                    self._walk(p, reason, ())

    def _add_link(self, path: str, reason: str) -> None:
        """Keep a link found in a tree; carry its target too (e.g. venv python -> /usr/bin)."""
        self.closure.symlinks[path] = os.readlink(host_path(self.root, path))
        self.closure.reasons.setdefault(path, reason)
        target = self.add_path(path, f"target of link {path}", must_exist=False)
        if target is not None and host_path(self.root, target).is_file() \
                and is_elf(host_path(self.root, target)):
            self._walk(target, reason, ())
