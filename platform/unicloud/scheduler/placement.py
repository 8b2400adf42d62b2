"""Where a new instance runs: the live host with the most free memory, on a free host port."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from unicloud.db.models import Host, Instance
from unicloud.scheduler.transitions import ACTIVE


class NoCapacity(RuntimeError):
    """No live host has enough free memory (or free ports) for the instance."""


def port_range() -> range:
    text = os.environ.get("UNICLOUD_PORT_RANGE", "20000-29999")
    try:
        lo, hi = (int(x) for x in text.split("-", 1))
    except ValueError:
        raise ValueError(f"UNICLOUD_PORT_RANGE must look like 20000-29999, got {text!r}") from None
    if not 1024 <= lo <= hi <= 65535:
        raise ValueError(f"UNICLOUD_PORT_RANGE {text!r} must lie within 1024-65535")
    return range(lo, hi + 1)


def _bindable(port: int) -> bool:
    """All agents of this installation share the machine's loopback, so a port another program
    holds would make QEMU fail; skip it now rather than after a failed boot."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Placer:
    """Tracks memory and ports within one reconcile pass (placements there are not yet committed)."""

    hosts: list[Host]
    instances: list[Instance]  # every instance of every app
    ports: range | None = None
    _next_start = int.from_bytes(os.urandom(2), "big")  # class-wide: keeps rotating across passes

    def __post_init__(self):
        self.ports = self.ports or port_range()
        self.used_mb = {h.id: 0 for h in self.hosts}
        self.used_ports: set[int] = set()
        for inst in self.instances:
            if inst.state in ACTIVE and inst.host_id in self.used_mb:
                self.used_mb[inst.host_id] += inst.memory_mb
            if inst.state in ACTIVE + ("crashed",) and inst.host_port:
                self.used_ports.add(inst.host_port)

    def free_mb(self, host: Host) -> int:
        return host.capacity_mb - self.used_mb.get(host.id, 0)

    def place(self, memory_mb: int) -> tuple[Host, int]:
        fits = [h for h in self.hosts if self.free_mb(h) >= memory_mb]
        if not fits:
            free = ", ".join(f"{h.name}: {self.free_mb(h)} MB free" for h in self.hosts) or "no live hosts"
            raise NoCapacity(f"no host can fit an instance of {memory_mb} MB ({free})")
        host = max(fits, key=lambda h: (self.free_mb(h), -h.id))
        port = self._port()
        self.used_mb[host.id] += memory_mb
        return host, port

    def _port(self) -> int:
        n = len(self.ports)
        start = Placer._next_start % n
        for k in range(n):
            port = self.ports[(start + k) % n]
            if port in self.used_ports or not _bindable(port):
                continue
            self.used_ports.add(port)
            # Rotate through the range so a port just released is not reused at once.
            Placer._next_start = (start + k + 1) % n
            return port
        raise NoCapacity(f"no free host port in {self.ports.start}-{self.ports.stop - 1}")

