"""Resolve paths *inside* a build root the way the guest kernel will, without ever leaving it.

A build root is a directory on the host whose symlinks are absolute to the guest ("/lib" ->
"usr/lib", "/app/.venv/bin/python" -> "/usr/bin/python3.11"). Following them with the host's
`resolve()` would escape into the host's own /usr, so links are interpreted relative to the root
and every link crossed is reported: the image must carry the same links to be correct.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINK_HOPS = 40


class RootPathError(ValueError):
    """A path inside the root loops, or does not exist where it must."""


@dataclass
class Resolved:
    path: str  # final, link-free absolute path inside the root
    links: list[tuple[str, str]] = field(default_factory=list)  # (link path, raw target)


def host_path(root: Path, path: str) -> Path:
    """The host location of an absolute in-root path (no link resolution)."""
    return root / posixpath.normpath("/" + path).lstrip("/")


def resolve(root: Path, path: str) -> Resolved:
    """Resolve every symlink of `path` inside `root`; the result may not exist."""
    if not path.startswith("/"):
        raise RootPathError(f"not an absolute path inside the root: {path!r}")
    parts = [p for p in path.split("/") if p]
    cur = "/"
    links: list[tuple[str, str]] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            cur = posixpath.dirname(cur) or "/"
            continue
        cand = posixpath.join(cur, part)
        hp = host_path(root, cand)
        if hp.is_symlink():
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise RootPathError(f"too many levels of symbolic links: {path}")
            target = os.readlink(hp)
            links.append((cand, target))
            if target.startswith("/"):
                cur = "/"
            parts = [p for p in target.split("/") if p] + parts
            continue
        cur = cand
    return Resolved(cur, links)


def to_root_relative(root: Path, host: Path) -> str:
    """The in-root absolute path of a host path below `root`."""
    rel = host.relative_to(root).as_posix()
    return "/" if rel == "." else "/" + rel
