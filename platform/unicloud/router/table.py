"""The routing table: the only contract between the scheduler (writer) and the router (reader).

The scheduler decides which backends are routable (healthy instances of the active release)
and publishes the whole table to Redis; the router renders it into nginx config. A table is
identified by the hash of its content, so the router's acknowledgement (`router:applied`)
tells the scheduler exactly which table nginx is serving.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

TABLE_KEY = "router:table"
NOTIFY_CHANNEL = "router:notify"
APPLIED_KEY = "router:applied"
APPLIED_CHANNEL = "router:applied"  # the router announces each version it starts serving

_APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,29}\Z")
_ADDR = re.compile(r"[0-9A-Za-z.\-\[\]:]+:\d{1,5}\Z")


class TableError(ValueError):
    """A routing table that would render into broken or unsafe nginx config."""


@dataclass(frozen=True)
class Backend:
    addr: str  # host:port reachable from the router
    dyno: str  # e.g. web.1, for access-log lines
    instance_id: str = ""


@dataclass
class RoutingTable:
    apps: dict[str, list[Backend]] = field(default_factory=dict)

    def to_json(self) -> str:
        data = {name: [[b.addr, b.dyno, b.instance_id] for b in sorted(bs, key=lambda b: (b.dyno, b.addr))]
                for name, bs in sorted(self.apps.items())}
        return json.dumps({"apps": data}, sort_keys=True, separators=(",", ":"))

    @property
    def version(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> "RoutingTable":
        data = json.loads(text)
        table = cls({name: [Backend(*row) for row in rows] for name, rows in data.get("apps", {}).items()})
        table.validate()
        return table

    def validate(self) -> None:
        """Names and addresses end up inside nginx config: accept only what cannot inject directives."""
        for name, backends in self.apps.items():
            if not _APP_NAME.match(name):
                raise TableError(f"invalid app name in routing table: {name!r}")
            for b in backends:
                if not _ADDR.match(b.addr):
                    raise TableError(f"invalid backend address for {name}: {b.addr!r}")
                if not re.fullmatch(r"[a-z0-9]+\.\d+", b.dyno):
                    raise TableError(f"invalid dyno name for {name}: {b.dyno!r}")

    def dyno_by_addr(self) -> dict[str, tuple[str, str]]:
        return {b.addr: (name, b.dyno) for name, bs in self.apps.items() for b in bs}


def publish(r, table: RoutingTable) -> str:
    """Store the table and wake the router; returns the table's version."""
    table.validate()
    text = table.to_json()
    version = table.version
    r.set(TABLE_KEY, text)
    r.publish(NOTIFY_CHANNEL, version)
    return version


def read(r) -> RoutingTable:
    text = r.get(TABLE_KEY)
    return RoutingTable.from_json(text) if text else RoutingTable()


def acknowledge(r, version: str) -> None:
    """Router side: record the version nginx now serves and wake whoever waits for it."""
    r.set(APPLIED_KEY, version)
    r.publish(APPLIED_CHANNEL, version)


def applied_version(r) -> str | None:
    return r.get(APPLIED_KEY)
