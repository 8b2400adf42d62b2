"""Compile the image's PID 1 (`init.c`) into a small static binary, cached by source hash.

musl gives a ~50 KiB static binary with no runtime dependencies, which is what a shell-less
image needs; plain `gcc -static` (glibc) is the fallback. The flags pin everything that could
vary between builds (no build-id, no file paths), so the same source gives the same bytes.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from unicloud.config import Settings

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "init.c"
CFLAGS = ["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-fno-ident",
          "-ffile-prefix-map=/=/", "-Wl,--build-id=none"]


class InitBuildError(RuntimeError):
    """No usable compiler, or init.c does not compile."""


def _compiler() -> str:
    if shutil.which("musl-gcc"):
        return "musl-gcc"
    if shutil.which("gcc"):
        log.warning("musl-gcc not found (apt-get install musl-tools); building init with glibc, "
                    "which makes it several times larger")
        return "gcc"
    raise InitBuildError("no C compiler: apt-get install musl-tools")


def ensure_init() -> Path:
    """Return the path of the compiled init for the current `init.c`."""
    compiler = _compiler()
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + b"\0" + " ".join([compiler, *CFLAGS]).encode()).hexdigest()
    dest_dir = Settings.from_env().cache_dir / "init" / key
    dest = dest_dir / "init"
    if dest.is_file():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    with open(dest_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.is_file():
            return dest
        with tempfile.TemporaryDirectory(prefix="unicloud-init-") as tmp:
            src = Path(tmp) / "init.c"
            src.write_bytes(source)
            out = Path(tmp) / "init"
            proc = subprocess.run([compiler, *CFLAGS, "-o", "init", "init.c"], cwd=tmp,
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise InitBuildError(f"{compiler} failed on init.c:\n{proc.stderr[-3000:]}")
            out.chmod(0o755)
            shutil.copy2(out, dest_dir / "init.tmp")
            (dest_dir / "init.tmp").rename(dest)
    return dest
