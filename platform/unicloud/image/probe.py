"""Run a short Python probe with the app's own interpreter inside the build root.

The interpreter must be the root's (its bytecode magic, its stdlib, its sys.path), so it runs in
a chroot; as nobody and in an empty network namespace, because the root was produced by
untrusted build steps and the trace imports app code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path

NOBODY = "65534:65534"
MARKER = "UNICLOUD-PROBE:"


class ProbeError(RuntimeError):
    """The probe could not run or did not report."""


def probe_source() -> str:
    return resources.files("unicloud.image").joinpath("stdlib_probe.py").read_text()


def _tool(name: str) -> str:
    """Host tools by absolute path: the child's PATH is the guest's, not the host's."""
    found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        raise ProbeError(f"{name} (util-linux/coreutils) is required to probe the build root")
    return found


def run_probe(root: Path, interpreter: str, request: dict, *, site: bool = False,
              env: dict[str, str] | None = None, timeout: float = 300) -> dict:
    """Send `request` to the probe; return its decoded answer."""
    flags = ["-s"] if site else ["-s", "-S"]
    argv = [_tool("unshare"), "--net", _tool("chroot"), f"--userspec={NOBODY}", str(root),
            interpreter, *flags, "-c", probe_source()]
    full_env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8",
                **(env or {}), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.run(argv, input=json.dumps(request).encode(), capture_output=True,
                              env=full_env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"{request['mode']} probe timed out after {timeout}s") from exc
    for line in reversed(proc.stdout.decode(errors="replace").splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    raise ProbeError(f"{request['mode']} probe with {interpreter} failed "
                     f"(exit {proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
