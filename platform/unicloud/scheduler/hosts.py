"""Host liveness: agents heartbeat into Redis; a host without a fresh heartbeat gets no new work."""

from __future__ import annotations

HEARTBEAT_TTL = 15  # seconds; an agent restart (a few seconds) must not look like a lost host
HEARTBEAT_EVERY = 2


def heartbeat_key(host_name: str) -> str:
    return f"host:{host_name}:heartbeat"


def beat(r, host_name: str, info: str = "1") -> None:
    r.set(heartbeat_key(host_name), info, ex=HEARTBEAT_TTL)


def is_live(r, host_name: str) -> bool:
    return bool(r.exists(heartbeat_key(host_name)))
