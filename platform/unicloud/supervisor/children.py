"""Child processes of the supervisor: own process group each, killed with the supervisor."""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to the child if the supervisor dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def resolve_command(command: str) -> list[str]:
    """Run `python`/`celery` from the Procfile with the platform's own interpreter and venv."""
    argv = shlex.split(command)
    bindir = Path(sys.executable).parent
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    elif argv and (bindir / argv[0]).exists():
        argv[0] = str(bindir / argv[0])
    return argv


@dataclass
class Child:
    name: str
    command: str
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    _log: object = field(default=None, repr=False)

    def start(self) -> None:
        if self._log is None:
            self._log = open(self.log_path, "ab", buffering=0)
        self._log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.name}: {self.command}\n".encode())
        self.proc = subprocess.Popen(
            resolve_command(self.command), env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent,
        )
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.proc.wait()
        # Reap leftovers of the group (celery pool children, nginx workers) even if the leader exited.
        self.signal_group(signal.SIGKILL)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
