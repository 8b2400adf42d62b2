"""Build (once per machine) the small guest kernel an image boots.

A flavour is a config fragment next to this file (`<flavour>.config`) applied on top of
`make ARCH=x86_64 tinyconfig` from Debian's `linux-source-6.1`. The result is cached under
`Settings.cache_dir/kernels/<key>/{bzImage,config}` where the key hashes the fragment, the
kernel source package version and the flavour, so a config change or a Debian security update
gives a new kernel while everything else reuses the old one. An fcntl lock makes concurrent
callers (several build workers) wait for one build instead of running two.

Kconfig silently drops options whose dependencies are unmet; the build therefore checks that
every option the fragment sets survived `olddefconfig` and refuses to continue otherwise.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from collections import deque
from pathlib import Path

from unicloud.config import Settings

log = logging.getLogger(__name__)

FRAGMENT_DIR = Path(__file__).resolve().parent
SOURCE_PACKAGE = "linux-source-6.1"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
ARCH = "x86_64"
JOBS = 2

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


class KernelBuildError(RuntimeError):
    """The kernel could not be configured or built."""


class KernelConfigError(KernelBuildError):
    """Options requested by the fragment did not survive `olddefconfig`."""

    def __init__(self, flavour: str, dropped: list[str]):
        self.dropped = dropped
        super().__init__(
            f"kernel flavour {flavour!r}: {len(dropped)} requested option(s) did not end up in "
            f".config (unmet dependencies or misspelt): " + "; ".join(dropped))


def parse_config(text: str) -> dict[str, str | None]:
    """Map CONFIG_X -> value ("y", "m", "\"str\"", "42") or None for "is not set".

    Later lines override earlier ones, as in Kconfig."""
    out: dict[str, str | None] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if m := _SET.match(line):
            out[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            out[m.group(1)] = None
        elif line and not line.startswith("#"):
            raise KernelBuildError(f"cannot parse kernel config line: {raw!r}")
    return out


def missing_options(requested: dict[str, str | None], actual: dict[str, str | None]) -> list[str]:
    """Describe every requested option whose final value differs ("CONFIG_X: wanted y, got n")."""
    problems = []
    for name, want in requested.items():
        got = actual.get(name)
        if want in (None, "n"):
            if got not in (None, "n"):
                problems.append(f"{name}: wanted unset, got {got}")
        elif got != want:
            problems.append(f"{name}: wanted {want}, got {'unset' if got is None else got}")
    return problems


def fragment_path(flavour: str) -> Path:
    path = FRAGMENT_DIR / f"{flavour}.config"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", flavour) or not path.is_file():
        known = sorted(p.stem for p in FRAGMENT_DIR.glob("*.config"))
        raise KernelBuildError(f"unknown kernel flavour {flavour!r}; known flavours: {', '.join(known)}")
    return path


def source_version() -> str:
    """Version of the Debian kernel source package: part of the cache key."""
    if not SOURCE_TARBALL.is_file():
        raise KernelBuildError(f"{SOURCE_TARBALL} is missing: apt-get install {SOURCE_PACKAGE}")
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise KernelBuildError(f"cannot determine the version of {SOURCE_PACKAGE}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def cache_key(flavour: str) -> str:
    fragment = fragment_path(flavour).read_text()
    h = hashlib.sha256()
    for part in (fragment, source_version(), flavour):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def kernels_dir() -> Path:
    return Settings.from_env().cache_dir / "kernels"


def ensure_kernel(flavour: str = "microvm", *, progress: bool = True) -> Path:
    """Return the cached bzImage for `flavour`, building it first if needed (minutes)."""
    key = cache_key(flavour)
    dest = kernels_dir() / key
    image = dest / "bzImage"
    if image.is_file():
        return image
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.is_file():  # someone else built it while we waited
            return image
        _build(flavour, dest, progress=progress)
    return image


def _build(flavour: str, dest: Path, *, progress: bool) -> None:
    fragment = fragment_path(flavour).read_text()
    work = dest.parent / f"{dest.name}.build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    try:
        log.info("unpacking %s", SOURCE_TARBALL)
        untar = subprocess.run(["nice", "tar", "-xf", str(SOURCE_TARBALL), "-C", str(work)],
                               capture_output=True, text=True, check=False)
        if untar.returncode != 0:
            raise KernelBuildError(f"cannot unpack {SOURCE_TARBALL}: {untar.stderr.strip()}")
        (src,) = [p for p in work.iterdir() if p.is_dir()]
        env = _build_env()
        _make(src, env, "tinyconfig")
        with open(src / ".config", "a") as cfg:
            cfg.write(f"\n# ---- unicloud fragment: {flavour}.config ----\n{fragment}\n")
        _make(src, env, "olddefconfig")
        config_text = (src / ".config").read_text()
        dropped = missing_options(parse_config(fragment), parse_config(config_text))
        if dropped:
            raise KernelConfigError(flavour, dropped)
        _compile(src, env, progress=progress)
        staged = dest.parent / f"{dest.name}.new"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir()
        shutil.copy2(src / "arch/x86/boot/bzImage", staged / "bzImage")
        (staged / "config").write_text(config_text)
        staged.rename(dest)
        log.info("kernel %s built in %.0fs: %s (%d bytes)", flavour, time.monotonic() - started,
                 dest / "bzImage", (dest / "bzImage").stat().st_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build_env() -> dict[str, str]:
    """Fixed identity strings so rebuilding the same input gives the same banner."""
    env = dict(os.environ)
    env.update({"ARCH": ARCH, "KBUILD_BUILD_USER": "unicloud", "KBUILD_BUILD_HOST": "unicloud",
                "KBUILD_BUILD_TIMESTAMP": "1970-01-01", "KBUILD_BUILD_VERSION": "1", "LC_ALL": "C"})
    return env


def _make(src: Path, env: dict[str, str], target: str) -> None:
    proc = subprocess.run(["make", f"ARCH={ARCH}", target], cwd=src, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KernelBuildError(f"make {target} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")


def _compile(src: Path, env: dict[str, str], *, progress: bool) -> None:
    """`nice make -j2 bzImage`, counting compiled objects as progress."""
    argv = ["nice", "make", f"ARCH={ARCH}", f"-j{JOBS}", "bzImage"]
    tail: deque[str] = deque(maxlen=40)
    objects = 0
    proc = subprocess.Popen(argv, cwd=src, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    status_ctx = None
    if progress:
        from rich.console import Console

        status_ctx = Console(stderr=True).status("building kernel")
        status_ctx.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            if line.lstrip().startswith(("CC ", "AS ", "LD ")):
                objects += 1
                if status_ctx is not None:
                    status_ctx.update(f"building kernel: {objects} objects, {line.strip()}")
                elif objects % 200 == 0:
                    log.info("kernel build: %d objects compiled", objects)
        proc.wait()
    finally:
        if status_ctx is not None:
            status_ctx.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise KernelBuildError("kernel build failed:\n" + "\n".join(tail))
