"""Audit an image's rootfs: no shell, no tools an attacker could live off, nothing writable.

Rules (each violation names the path and the rule):
  forbidden-name     an executable, ELF or symlink whose basename is a shell, coreutils tool,
                     compiler/linker/assembler, remote-access tool or package manager; and any
                     file at all with such a name in a bin/sbin directory
  forbidden-content  an ELF file carrying the signature strings of one of those tools, so a
                     renamed binary is caught too (busybox, bash/dash/any POSIX shell,
                     coreutils, gcc driver, GNU ld/as, clang, tcc, the go command and its
                     compiler/linker, OpenSSH, dropbear, dpkg, apt, rpm, apk)
  package-manager    a Python package manager's package in site-packages (pip, ...)
  setuid / setgid    any file with those bits
  writable           anything writable by a non-root user outside /tmp (group/other write bit,
                     or a non-root owner), except the /dev nodes every process may write to
  device-node        a device node other than console, null, zero, urandom, random, tty
Not detected: a statically linked tool whose strings were stripped or obfuscated, and tools
written in an interpreted language the image legitimately carries (a Python reverse shell is
still possible; the image only makes it harder by having nothing to exec).
"""

from __future__ import annotations

import posixpath
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from unicloud.image.cpio import CpioEntry

SHELLS = {"sh", "bash", "rbash", "dash", "ash", "zsh", "ksh", "ksh93", "mksh", "pdksh", "csh",
          "tcsh", "fish", "yash", "posh", "busybox", "toybox", "elvish", "nu"}
COREUTILS = {
    "ls", "cat", "cp", "mv", "rm", "ln", "chmod", "chown", "chgrp", "mkdir", "rmdir", "touch",
    "dd", "echo", "env", "head", "tail", "id", "whoami", "su", "sudo", "doas", "mount", "umount",
    "kill", "ps", "tee", "install", "mknod", "mkfifo", "stat", "printf", "test", "[", "sleep",
    "nohup", "nice", "chroot", "uname", "date", "df", "du", "wc", "sort", "cut", "tr", "sed",
    "awk", "gawk", "mawk", "find", "xargs", "grep", "egrep", "fgrep", "tar", "gzip", "base64",
    "curl", "wget", "nc", "netcat", "ncat", "socat", "telnet", "perl", "strace", "gdb", "vi",
    "vim", "nano", "setpriv", "unshare", "nsenter", "capsh", "setcap", "mktemp", "readlink",
    "realpath", "basename", "dirname", "true", "false", "yes", "seq", "md5sum", "sha256sum",
}
TOOLCHAIN = {"cc", "c++", "cpp", "gcc", "g++", "cc1", "cc1plus", "collect2", "lto1", "ld",
             "ld.bfd", "ld.gold", "ld.lld", "lld", "gold", "as", "gas", "tcc", "clang",
             "clang++", "clang-cpp", "go", "gofmt", "cgo", "rustc", "cargo", "make", "gmake",
             "cmake", "ninja", "nasm", "yasm", "objcopy", "objdump", "strip", "ar", "nm"}
REMOTE = {"ssh", "scp", "sftp", "sshd", "sftp-server", "ssh-agent", "ssh-add", "ssh-keygen",
          "dropbear", "dropbearkey", "dbclient", "telnetd", "rsh", "rlogin", "rsync"}
PACKAGE_MANAGERS = {"apt", "apt-get", "apt-cache", "apt-key", "aptitude", "dpkg", "dpkg-deb",
                    "dpkg-query", "pip", "pip3", "easy_install", "rpm", "yum", "dnf", "zypper",
                    "apk", "pacman", "npm", "npx", "yarn", "pnpm", "gem", "bundle", "conda",
                    "mamba", "uv", "poetry", "pipx", "nix", "snap", "flatpak", "opkg"}
FORBIDDEN_NAMES = SHELLS | COREUTILS | TOOLCHAIN | REMOTE | PACKAGE_MANAGERS
# Versioned or target-prefixed variants: pip3.11, gcc-12, x86_64-linux-gnu-ld.bfd, python3-config
FORBIDDEN_NAME_PATTERNS = (
    re.compile(r"^pip\d+(\.\d+)*$"),
    re.compile(r"^(.+-)?(gcc|g\+\+|cpp|cc|c\+\+|ld|ld\.bfd|ld\.gold|as|clang|clang\+\+|lto1|"
               r"cc1|collect2|objcopy|objdump|strip|ar|nm)(-[\d.]+)?$"),
    re.compile(r"^python[\d.]*-config$"),
    re.compile(r"^easy_install(-[\d.]+)?$"),
)
BIN_DIRS = re.compile(r"(^|/)s?bin(/|$)")
# Byte strings that identify a tool inside an ELF file, whatever it is named.
CONTENT_SIGNATURES: tuple[tuple[str, tuple[bytes, ...]], ...] = (
    ("busybox", (b"BusyBox v",)),
    ("toybox", (b"toybox", b"Toybox")),
    ("bash", (b"GNU bash",)),
    ("posix shell", (b"PPID", b"PS1", b"IFS")),
    ("coreutils", (b"GNU coreutils",)),
    ("gcc driver", (b"COLLECT_GCC",)),
    ("GNU ld", (b"GNU ld",)),
    ("GNU assembler", (b"GNU assembler",)),
    ("clang", (b"clang version",)),
    ("tcc", (b"tcc version",)),
    ("go command", (b"cmd/go/internal",)),
    ("go compiler", (b"cmd/compile/internal",)),
    ("go linker", (b"cmd/link/internal",)),
    ("OpenSSH", (b"OpenSSH_",)),
    ("dropbear", (b"Dropbear",)),
    ("dpkg", (b"DPKG_ADMINDIR",)),
    ("apt", (b"apt-pkg",)),
    ("rpm", (b"rpmlib",)),
    ("apk", (b"apk-tools",)),
)
PYTHON_PACKAGE_MANAGERS = re.compile(r"/(site|dist)-packages/(pip|pipx|poetry|conda|uv)"
                                     r"(/|-[\d.]+\.dist-info/|$)")
ALLOWED_DEVICES = {"/dev/console", "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random",
                   "/dev/tty"}
WRITABLE_OK = re.compile(r"^/tmp(/|$)")


@dataclass
class AuditResult:
    violations: list[dict] = field(default_factory=list)
    checked: int = 0

    @property
    def passed(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict:
        return {"passed": self.passed, "checked": self.checked,
                "violations": sorted(self.violations, key=lambda v: (v["path"], v["rule"]))}


def forbidden_name(name: str) -> bool:
    return name in FORBIDDEN_NAMES or any(p.match(name) for p in FORBIDDEN_NAME_PATTERNS)


def content_matches(data: bytes) -> list[str]:
    """Names of the tools whose signatures an ELF file carries."""
    if not data.startswith(b"\x7fELF"):
        return []
    return [tool for tool, sigs in CONTENT_SIGNATURES if all(s in data for s in sigs)]


def audit_entries(entries: Iterable[CpioEntry]) -> AuditResult:
    result = AuditResult()

    def flag(path: str, rule: str, detail: str) -> None:
        result.violations.append({"path": path, "rule": rule, "detail": detail})

    for e in entries:
        result.checked += 1
        path = "/" + e.path.strip("/")
        name = posixpath.basename(path)
        kind = stat.S_IFMT(e.mode)
        is_elf = e.is_file and e.data.startswith(b"\x7fELF")
        executable = e.is_file and bool(e.mode & 0o111)

        if forbidden_name(name) and (e.is_symlink or is_elf or executable or
                                     (e.is_file and BIN_DIRS.search(posixpath.dirname(path)))):
            flag(path, "forbidden-name", f"{name!r} is a forbidden tool name")
        if is_elf:
            for tool in content_matches(e.data):
                flag(path, "forbidden-content", f"ELF file looks like {tool}")
        if PYTHON_PACKAGE_MANAGERS.search(path):
            flag(path, "package-manager", "python package manager in site-packages")
        if e.mode & stat.S_ISUID:
            flag(path, "setuid", f"mode {stat.filemode(e.mode)}")
        if e.mode & stat.S_ISGID:
            flag(path, "setgid", f"mode {stat.filemode(e.mode)}")
        if kind in (stat.S_IFCHR, stat.S_IFBLK):
            if path not in ALLOWED_DEVICES or kind == stat.S_IFBLK:
                flag(path, "device-node", f"device {e.rdevmajor}:{e.rdevminor}")
            continue
        if kind == stat.S_IFLNK or WRITABLE_OK.match(path):
            continue
        if e.mode & 0o022 or (e.uid != 0 and e.mode & 0o200):
            flag(path, "writable", f"mode {stat.filemode(e.mode)} uid {e.uid} gid {e.gid}")
        elif kind not in (stat.S_IFREG, stat.S_IFDIR):
            flag(path, "special-file", f"unexpected file type {stat.filemode(e.mode)[0]!r}")
    return result
