"""A minimal QMP client: one command per connection, which is all the agent needs (quit, status)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class QMPError(RuntimeError):
    """QEMU's monitor could not be reached or rejected the command."""


def qmp_command(sock_path: Path, command: str, arguments: dict[str, Any] | None = None,
                *, timeout: float = 5.0) -> Any:
    """Run `command` and return its "return" value."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(sock_path))
            stream = sock.makefile("rwb")
            _read_reply(stream, greeting=True)
            for cmd, args in (("qmp_capabilities", None), (command, arguments)):
                msg: dict[str, Any] = {"execute": cmd}
                if args:
                    msg["arguments"] = args
                stream.write(json.dumps(msg).encode() + b"\n")
                stream.flush()
                reply = _read_reply(stream)
            return reply
    except OSError as exc:
        raise QMPError(f"QMP {command} via {sock_path}: {exc}") from exc


def _read_reply(stream, *, greeting: bool = False) -> Any:
    while True:
        line = stream.readline()
        if not line:
            raise QMPError("QEMU closed the monitor connection")
        msg = json.loads(line)
        if greeting and "QMP" in msg:
            return msg
        if "return" in msg:
            return msg["return"]
        if "error" in msg:
            raise QMPError(f"{msg['error'].get('class')}: {msg['error'].get('desc')}")
        # asynchronous events ("event": ...) are skipped
