"""How the supervisor knows each platform process is really serving, not merely started."""

from __future__ import annotations

import socket
import urllib.request

from unicloud.config import Settings


def _connect_host(bind: str) -> str:
    return "127.0.0.1" if bind in ("0.0.0.0", "") else ("::1" if bind == "::" else bind)


def tcp_banner(host: str, port: int, expect: bytes = b"", timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if not expect:
                return True
            s.settimeout(timeout)
            return s.recv(64).startswith(expect)
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def check(name: str, settings: Settings) -> bool:
    host = _connect_host(settings.bind)
    if name == "api":
        return http_ok(f"http://{host}:{settings.api_port}/api/openapi.json")
    if name == "git":
        return tcp_banner(host, settings.ssh_port, b"SSH-")
    if name == "router":
        return tcp_banner(host, settings.router_port)
    return True  # queue consumers: being alive past the grace period is the signal


def port_in_use(bind: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, port))
        except OSError:
            return True
    return False
